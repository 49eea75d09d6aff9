"""Response headers for a JSON API that a browser or a shared cache may see.

* ``X-Content-Type-Options: nosniff`` on everything: a response is only ever what its
  ``Content-Type`` says.
* ``Cache-Control: no-store`` on responses to a request that carried a key, or to a
  private route, unless the response says otherwise (the response cache marks its
  private entries ``private, max-age=…``): no shared cache keeps a user's data or a
  refusal.

Added by the outermost layer (``services.api.middleware.observe``) in its one pass over
every response's headers, its own 500 and the other layers' refusals included.

The server's own ``Server`` header is switched off in the gunicorn worker class
(``services.api.uvicorn_worker``).
"""

from __future__ import annotations

from starlette.types import Scope

from services.api.middleware.api_key import PRINCIPAL_KEY, AccessTable

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    def __init__(self, access: AccessTable) -> None:
        self.access = access

    def add(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
        """Append the security headers to ``headers``, the response's to ``scope``."""
        headers.append(_NOSNIFF)
        if _is_private(scope, self.access) and not any(
            name == b"cache-control" for name, _ in headers
        ):
            headers.append(_NO_STORE)


def _is_private(scope: Scope, access: AccessTable) -> bool:
    if PRINCIPAL_KEY in scope:
        return True
    if any(name == b"authorization" for name, _ in scope["headers"]):
        return True
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    return access.scope_for(method, scope["path"]) is not None
