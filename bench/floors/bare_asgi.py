"""Floor 1: the cheapest possible ASGI response, under the same gunicorn + uvicorn setup
as the api. Nothing served through Python can be faster than this."""

from __future__ import annotations

from typing import Any

BODY = b'{"message":"hello"}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"19")],
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(START)
    await send({"type": "http.response.body", "body": BODY})
