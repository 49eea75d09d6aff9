"""Request metrics and the ``Server-Timing`` header, as pure ASGI middleware.

The route label is read *after* the app ran, when the router has put the matched route
in the scope; requests that match no route share one label.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api import metrics
from services.api.middleware.request_context import route_template
from services.core.timing import request_timing


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500
        size = 0
        timing = request_timing.start()

        async def instrumented_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed_ms = (time.perf_counter() - started) * 1000
                MutableHeaders(scope=message).append(
                    "server-timing", timing.header(total_ms=elapsed_ms)
                )
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, instrumented_send)
        finally:
            metrics.IN_FLIGHT.dec()
            request_timing.stop(timing)
            requests, latency, response_size = metrics.request_series(
                metrics.method_label(scope["method"]), route_template(scope), f"{status // 100}xx"
            )
            requests.inc()
            latency.observe(time.perf_counter() - started)
            response_size.observe(size)
