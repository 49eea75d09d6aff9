"""Floor 1: the cheapest possible ASGI response, under the same gunicorn + uvicorn setup
as the api. Nothing served through Python can be faster than this."""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]
App = Any


def constant_response(start: Message, body: bytes) -> App:
    """An ASGI app that answers every request with ``start`` and ``body``."""

    async def app(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return app


app = constant_response(
    {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"19")],
    },
    b'{"message":"hello"}',
)
