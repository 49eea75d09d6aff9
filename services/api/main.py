"""The api process: ``create_app()`` is the gunicorn/uvicorn entry point (a factory, so
nothing is built at import time and every worker builds its own pools after fork)."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.access import SECURITY_SCHEMES
from services.api.cache.middleware import ResponseCacheMiddleware
from services.api.docs import install_docs
from services.api.lifespan import lifespan_for
from services.api.middleware.api_key import AccessTable, ApiKeyMiddleware
from services.api.middleware.body_limit import BodySizeLimitMiddleware
from services.api.middleware.head import HeadAsGetMiddleware
from services.api.middleware.observe import RequestObservationMiddleware
from services.api.middleware.rate_limit import LimitedRoutes, RateLimitMiddleware
from services.api.middleware.request_limits import RequestLimitsMiddleware
from services.api.middleware.security_headers import SecurityHeaders
from services.api.problems import install_problem_handlers, problem_responses
from services.api.request_metrics import RequestMetrics
from services.api.routes import health, orders, products, users
from services.core.rate_limit import Policy
from services.core.settings import Settings
from services.core.telemetry.access_log import AccessLog
from services.core.telemetry.logs import ACCESS_LOGGER, logging_config
from services.core.telemetry.metric_batch import MetricBatch


class StampedeApi(FastAPI):
    """FastAPI with our request-observation and response-cache layers *outside* it.

    ``add_middleware`` layers run inside Starlette's error middleware and FastAPI's
    exception-telemetry and body-limit layers: four calls and a ``send`` wrapper before a
    cached hit could be answered, a large share of a hit's cost (the benchmark docs have
    the figures). Our outer layers only read headers,
    never the body, pass anything but HTTP (the lifespan) straight through, and answer
    for their own failures with the same RFC 9457 500
    (``services.api.middleware.observe``).
    """

    def __init__(self, *, outer: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._outer = outer(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._outer(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        # Private routes name the scheme (services.api.routing); declare it once here.
        schema = super().openapi()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.config.dictConfig(logging_config(settings.log.level, settings.log.json_format))
    routers = [health.router, users.router, products.router, orders.router]
    routes = [route for r in routers for route in r.routes]
    access = AccessTable(routes)
    # Health checks (the kubelet's) and the docs are never limited.
    limited = LimitedRoutes(
        [route for r in routers if r is not health.router for route in r.routes]
    )
    limits = settings.rate_limit
    # This process's metric buffer and access log, flushed by the lifespan.
    batch = MetricBatch()
    access_log = None
    if settings.log.access_log and logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO):
        access_log = AccessLog(
            json_format=settings.log.json_format, flush_after_s=settings.log.access_log_flush_s
        )
    request_metrics = RequestMetrics(batch) if settings.metrics.enabled else None

    def outer(app: ASGIApp) -> ASGIApp:
        # Inside out: the cache (GETs only, before anything reads a body) wraps FastAPI's
        # stack; the rate limit and, before it, the API key are checked in front of it (a
        # cached hit is still a request, a cached private read still needs its key);
        # HEAD is served as GET around them (from the same entries); oversized requests
        # are refused before anything else looks at them; request id, access log and
        # metrics wrap everything, and that layer adds every answer's headers in one pass
        # (the security headers, refusals and its own 500 included, and those the inner
        # layers queued).
        if settings.cache.enabled:
            app = ResponseCacheMiddleware(app)
        if limits.enabled:
            app = RateLimitMiddleware(
                app,
                limited=limited,
                per_key=Policy("key", limits.key_rate_per_s, limits.key_burst),
                per_ip=Policy("ip", limits.anonymous_rate_per_s, limits.anonymous_burst),
                trusted_hops=limits.trusted_proxy_hops,
            )
        app = ApiKeyMiddleware(app, access)
        app = HeadAsGetMiddleware(app)
        app = RequestLimitsMiddleware(
            app,
            max_target_bytes=settings.api.max_target_bytes,
            max_header_bytes=settings.api.max_header_bytes,
            max_headers=settings.api.max_headers,
        )
        return RequestObservationMiddleware(
            app, security=SecurityHeaders(access), access_log=access_log, metrics=request_metrics
        )

    app = StampedeApi(
        outer=outer,
        title=settings.api.title,
        version="0.1.0",
        # The response cache matches its routes before routing, in the router's order.
        lifespan=lifespan_for(settings, routes, batch, access_log),
        # FastAPI's native OpenTelemetry looks up the global providers on every request;
        # we export Prometheus metrics and no traces, so that is pure per-request cost.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Swagger UI and ReDoc from packaged assets (services.api.docs), not a CDN.
        docs_url=None,
        redoc_url=None,
        # Every route refuses oversized requests and can fail unexpectedly.
        responses=problem_responses(414, 431, 500),
    )
    install_problem_handlers(app)
    install_docs(app)
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    # Responses the cache does not store (it gzips its entries once, at store time).
    app.add_middleware(
        GZipMiddleware,
        minimum_size=settings.cache.compress_min_bytes,
        compresslevel=settings.cache.gzip_level,
    )
    return app
