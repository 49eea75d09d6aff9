"""Refuse oversized request targets (414) and header sections (431) before any work.

The server has already read them (gunicorn's uvicorn workers parse with httptools, which
bounds neither), so this does not save that memory; it keeps a request that no client of
ours needs from reaching auth, the cache and the routes, where every header is copied
and looked at again. Limits are counted on the bytes as received.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.problems import error_response
from services.core.errors import HeadersTooLarge, StampedeError, UriTooLong


class RequestLimitsMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_target_bytes: int, max_header_bytes: int, max_headers: int
    ) -> None:
        self.app = app
        self.max_target_bytes = max_target_bytes
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = self._refusal(scope)
            if error is not None:
                await error_response(error, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> StampedeError | None:
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
        if target > self.max_target_bytes:
            return UriTooLong(f"The request target exceeds {self.max_target_bytes} bytes.")
        headers = scope["headers"]
        if len(headers) > self.max_headers:
            return HeadersTooLarge(f"The request has more than {self.max_headers} headers.")
        size = sum(len(name) + len(value) for name, value in headers)
        if size > self.max_header_bytes:
            return HeadersTooLarge(f"The request headers exceed {self.max_header_bytes} bytes.")
        return None
