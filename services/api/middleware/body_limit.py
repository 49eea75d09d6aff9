"""Refuse request bodies over a size limit with a 413 problem, before they are buffered.

Starlette/FastAPI's own ``max_body_size`` answers a declared oversized Content-Length
with a plain-text 413 that replaces any handler's response, so it cannot give an RFC
9457 problem; this small middleware does the same job and leaves rendering to
``services.api.problems``:

* a declared ``Content-Length`` over the limit is answered at once, unread;
* a streamed (chunked) body is counted as the app reads it; passing the limit raises an
  ``HTTPException(413)``, which FastAPI's body parsing lets through to the handler.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.problems import problem_response


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        detail = f"The request body exceeds {self.max_bytes} bytes."
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = problem_response(
                413,
                type_="about:blank",
                title="Content Too Large",
                detail=detail,
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, detail=detail)
            return message

        await self.app(scope, limited_receive, send)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
