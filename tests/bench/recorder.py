"""An ASGI app that answers 201 and appends each request, as a JSON line, to the file
named by ``BENCH_RECORDER_FILE``: what the bench's load generators really send."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_FILE = Path(os.environ.get("BENCH_RECORDER_FILE", os.devnull))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    record = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "body": body.decode(),
    }
    # Blocking on purpose: each line complete before the answer, for a few requests.
    with _FILE.open("a") as out:  # noqa: ASYNC230
        out.write(json.dumps(record) + "\n")
    await send(
        {"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})
