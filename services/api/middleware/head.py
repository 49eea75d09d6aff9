"""``HEAD`` wherever ``GET`` works (RFC 9110 §9.3.2): the GET's status and headers, no
body.

FastAPI routes declare only the methods they are given, so a HEAD on a GET route was a
405. Served here, outside the response cache, a HEAD is answered from the same cache
entry as its GET, and no route needs declaring twice (nor documenting twice).

The app gets a copy of the scope: the server reads the method from its own scope when it
sends (it must still know this is a HEAD). The route the router matched is copied back
for the layers outside (access log, metrics).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, without_body)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]
