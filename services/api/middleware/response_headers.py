"""Headers the inner layers want on the response, added in one pass by the outermost
layer (``services.api.middleware.observe``) rather than by a ``send`` wrapper each: every
wrapper is a coroutine call per message and a copy of the header list, a visible share
of a cached hit (the benchmark docs have the figures).

The outermost layer puts a list in the scope; layers inside append to it before they
call the app. Copies of the scope made inside (HEAD served as GET, the cache's identity
request) share the list.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Scope

RESPONSE_HEADERS = "stampede.response_headers"


def add_response_headers(scope: Scope, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Queue ``headers`` for the response; False when no outer layer will add them."""
    queued: list[tuple[bytes, bytes]] | None = scope.get(RESPONSE_HEADERS)
    if queued is None:
        return False
    queued.extend(headers)
    return True
