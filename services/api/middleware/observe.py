"""Request id, access log, request metrics, ``Server-Timing`` and every response's added
headers: the outermost layer.

One pure ASGI middleware rather than several stacked ones: they observe the same request
and response, and every layer costs a coroutine per ``send`` — on a cached hit, that is
a measurable share of the request. It is also the one ``send`` wrapper that adds headers:
the security headers (``services.api.middleware.security_headers``) and whatever the inner
layers queued (``services.api.middleware.response_headers``: the rate limit's).

* Request id: a well-formed ``X-Request-ID`` from the caller is kept (so a trace spans
  the load balancer, the api and the worker), anything else is replaced; it is exposed
  to logs through a contextvar and returned on the response.
* Metrics and the access log are recorded after the app ran, when the router (or the
  response cache) has put the matched route in the scope; unmatched requests share one
  label. Both are buffered per process (``services.core.telemetry.metric_batch``,
  ``services.core.telemetry.access_log``).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.middleware.response_headers import RESPONSE_HEADERS
from services.api.middleware.security_headers import SecurityHeaders
from services.api.problems import internal_error_response
from services.api.request_metrics import RequestMetrics
from services.core.telemetry.access_log import AccessLog
from services.core.telemetry.logs import request_id_var
from services.core.telemetry.server_timing import request_timing

log = logging.getLogger("stampede.errors")

# Anything else (too long, control characters, spaces) is replaced, never echoed back.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestIds:
    """32 hex characters, like a uuid4's, for a tenth of its cost (no syscall per id):
    64 random bits drawn once per process, then a counter. Built after fork (the app is
    created in each worker), so no two workers share a prefix."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _ACCEPTABLE_ID.fullmatch(candidate) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. ``/users/{user_id}``; never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class RequestObservationMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        security: SecurityHeaders,
        access_log: AccessLog | None,
        metrics: RequestMetrics | None,
    ) -> None:
        self.app = app
        self.security = security
        self.access_log = access_log
        self.metrics = metrics
        self.ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or self.ids.next()
        token = request_id_var.set(request_id)
        metrics = self.metrics
        timing = request_timing.start() if metrics is not None else None
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        started = time.perf_counter()
        status = 0  # no response started yet
        size = 0
        queued: list[tuple[bytes, bytes]] = []
        scope[RESPONSE_HEADERS] = queued
        security = self.security

        async def observed_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), *queued, id_header]
                security.add(scope, headers)
                if timing is not None:
                    total_ms = (time.perf_counter() - started) * 1000
                    headers.append((b"server-timing", timing.header(total_ms=total_ms).encode()))
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        if metrics is not None:
            metrics.in_flight += 1
        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            # The one place an unexpected error is logged. FastAPI's error middleware
            # answers what the routes raise, then re-raises; this layer answers for what
            # fails outside it (the response cache, which holds a route's response back).
            # It ends here: re-raised, the server would log it again and close the
            # client's keep-alive connection.
            log.error("unhandled exception", exc_info=True)
            if not status:
                await internal_error_response(scope["path"])(scope, receive, observed_send)
        finally:
            status = status or 500  # the client got nothing: count it as the 500 it is
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            if metrics is not None:
                metrics.in_flight -= 1
                metrics.record(scope["method"], route, status, elapsed, size)
            if timing is not None:
                request_timing.stop(timing)
            if self.access_log is not None:
                client = scope.get("client")
                self.access_log.request(
                    method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=elapsed * 1000,
                    client=client[0] if client else "-",
                    request_id=request_id,
                )
            request_id_var.reset(token)
