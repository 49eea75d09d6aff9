"""Ceiling: the cached response's exact bytes — status, headers, body — from a bare ASGI
app, under the same gunicorn + uvicorn setup.

No cache answering that request from Python can beat this: it is the bare-ASGI floor
paying for the real response's size and headers. ``cached`` against this row is what
the cache lookup, the access log and the metrics cost per hit. ``python -m bench``
captures the response from the api and names the file in ``STAMPEDE_BENCH_RESPONSE``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.floors.bare_asgi import constant_response

_captured = json.loads(Path(os.environ["STAMPEDE_BENCH_RESPONSE"]).read_text())
app = constant_response(
    {
        "type": "http.response.start",
        "status": _captured["status"],
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in _captured["headers"]],
    },
    _captured["body"].encode("latin-1"),
)
