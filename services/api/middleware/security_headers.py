"""Response headers for a JSON API that a browser or a shared cache may see.

* ``X-Content-Type-Options: nosniff`` on everything: a response is only ever what its
  ``Content-Type`` says.
* ``Cache-Control: no-store`` on responses to a request that carried a key, or to a
  private route, unless the response says otherwise (the response cache marks its
  private entries ``private, max-age=…``): no shared cache keeps a user's data or a
  refusal.

The server's own ``Server`` header is switched off in the gunicorn worker class
(``services.api.uvicorn_worker``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.middleware.api_key import PRINCIPAL_KEY, AccessTable

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, access: AccessTable) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), _NOSNIFF]
                if _is_private(scope, self.access) and not any(
                    name == b"cache-control" for name, _ in headers
                ):
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _is_private(scope: Scope, access: AccessTable) -> bool:
    if PRINCIPAL_KEY in scope:
        return True
    if any(name == b"authorization" for name, _ in scope["headers"]):
        return True
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    return access.scope_for(method, scope["path"]) is not None
