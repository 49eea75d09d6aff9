"""API keys checked before the response cache: a cached private read still needs its
key (a hit is still a request), and a refused request costs no routing.

Which routes need which scope is read from the routes themselves
(:func:`services.api.access.requires`), matched here in routing order as the router
would, and remembered per (method, path). A known key costs one HMAC and a dict lookup
(``services.core.api_keys.KeyRing``). A refusal is a 401/403 problem with
``WWW-Authenticate``; a database that cannot be asked about an unknown key, a 503.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.access import required_scope
from services.api.problems import error_response
from services.core.api_keys import KeyRing, Principal
from services.core.db import CONNECTION_ERRORS, is_outage
from services.core.errors import DatabaseUnavailable, StampedeError, Unauthenticated

# Where the middleware leaves the request's principal for the layers inside.
PRINCIPAL_KEY = "stampede.principal"
_RESOLVED_MAX = 4096


class AccessTable:
    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes: list[tuple[re.Pattern[str], frozenset[str], str | None]] = []
        for route in routes:
            regex = getattr(route, "path_regex", None)
            methods = getattr(route, "methods", None)
            endpoint = getattr(route, "endpoint", None)
            if regex is None or not methods or endpoint is None:
                continue
            scope = required_scope(endpoint)
            self._routes.append((regex, frozenset(methods), scope.value if scope else None))
        self.scope_for = functools.lru_cache(maxsize=_RESOLVED_MAX)(self._scope_for)

    def _scope_for(self, method: str, path: str) -> str | None:
        """The scope a request needs; None for public routes and unmatched requests
        (the router answers those: 404, 405)."""
        for regex, methods, scope in self._routes:
            if method in methods and regex.match(path):
                return scope
        return None


def bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, access: AccessTable) -> None:
        self.app = app
        self.table = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = self.table.scope_for(scope["method"], scope["path"])
        # A public route needs no key, but one that is sent is checked: a bad key is an
        # error anywhere, and a good one makes the request count against its own rate
        # limit rather than its address's.
        if needed is None and bearer_token(scope["headers"]) is None:
            await self.app(scope, receive, send)
            return
        try:
            scope[PRINCIPAL_KEY] = await self._principal(scope, needed)
        except StampedeError as error:
            # A public route answers without the database (cached reads, health): it
            # goes on unauthenticated rather than failing for a key it did not need.
            if not (needed is None and isinstance(error, DatabaseUnavailable)):
                await error_response(error, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _principal(self, scope: Scope, needed: str | None) -> Principal:
        token = bearer_token(scope["headers"])
        if not token:
            raise Unauthenticated("Send an API key as `Authorization: Bearer <key>`.")
        ring: KeyRing = scope["state"]["resources"].api_keys
        try:
            principal = await ring.authenticate(token)
        except (DBAPIError, *CONNECTION_ERRORS) as error:
            if not is_outage(error):
                raise
            raise DatabaseUnavailable("API keys cannot be checked right now; retry.") from None
        if needed is not None:
            ring.authorize(principal, needed)
        return principal
