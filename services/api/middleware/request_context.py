"""Request id and access log, as pure ASGI middleware (the outermost layer).

Accepts a well-formed ``X-Request-ID`` from the caller (so a trace spans the load
balancer, the api and the worker) or makes one, exposes it to logs through a
contextvar, returns it on the response and writes one JSON access-log line per request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.logging import request_id_var

HEADER = "x-request-id"
# Anything else (too long, control characters, spaces) is replaced, never echoed back.
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

access_log = logging.getLogger("stampede.access")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _ACCEPTABLE_ID.match(candidate) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. ``/users/{user_id}``; never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log_enabled:
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route_template(scope),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": (scope.get("client") or ("-",))[0],
                    },
                )
            request_id_var.reset(token)
