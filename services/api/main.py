"""The api process: ``create_app()`` is the gunicorn/uvicorn entry point (a factory, so
nothing is built at import time and every worker builds its own pools after fork)."""

from __future__ import annotations

import logging.config

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from services.api.lifespan import lifespan_for
from services.api.middleware.body_limit import BodySizeLimitMiddleware
from services.api.middleware.metrics import MetricsMiddleware
from services.api.middleware.request_context import RequestContextMiddleware
from services.api.middleware.response_cache import ResponseCacheMiddleware
from services.api.problems import install_problem_handlers, problem_responses
from services.api.routes import health, orders, products, users
from services.core.logging import logging_config
from services.core.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.config.dictConfig(logging_config(settings.log.level, settings.log.json_format))
    routers = [health.router, users.router, products.router, orders.router]
    app = FastAPI(
        title=settings.api.title,
        version="0.1.0",
        # The response cache matches its routes before routing, in the router's order.
        lifespan=lifespan_for(settings, [route for r in routers for route in r.routes]),
        # Every route can fail unexpectedly; document that it is a problem too.
        responses=problem_responses(500),
    )
    install_problem_handlers(app)
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    # Responses the cache does not store (it gzips its entries once, at store time).
    app.add_middleware(
        GZipMiddleware,
        minimum_size=settings.cache.compress_min_bytes,
        compresslevel=settings.cache.gzip_level,
    )
    if settings.cache.enabled:
        # Outside the body limit: it answers GETs only, before anything reads a body.
        app.add_middleware(ResponseCacheMiddleware)
    if settings.metrics.enabled:
        app.add_middleware(MetricsMiddleware)
    # Outermost last: request id + access log wrap everything else.
    app.add_middleware(RequestContextMiddleware, access_log_enabled=settings.log.access_log)
    return app
