"""Build the process's resources after fork, dispose of them at shutdown.

Each gunicorn worker runs this once: the database engine, the cache Redis client, the
API-key ring, the response cache; then the buffers' periodic flush, and a
``gc.freeze()`` of everything built so far. Shutdown undoes it in reverse order and
flushes the buffers one last time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TypedDict

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute

from services.api.cache.assembly import cache_redis_client, running_cache
from services.api.resources import Resources
from services.core.api_keys import KeyRing
from services.core.cache.breaker import CircuitBreaker
from services.core.db import create_engine, create_read_engine, create_session_factory
from services.core.rate_limit import RateLimiter
from services.core.settings import Settings
from services.core.telemetry.access_log import AccessLog
from services.core.telemetry.metric_batch import MetricBatch
from services.core.telemetry.pool_metrics import forget_pool, instrument_pool
from services.core.telemetry.server_timing import time_statements


class LifespanState(TypedDict):
    resources: Resources


def _freeze_startup_objects() -> None:
    """Move everything built so far (modules, the app, routes, models, pools) out of the
    garbage collector's reach.

    They live as long as the process, yet every full collection walked all of them while
    the event loop stood still (see the benchmark docs). Collect first, so no startup
    garbage is frozen with them.
    """
    gc.collect()
    gc.freeze()


async def _flush_periodically(batch: MetricBatch, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        batch.flush()


async def _record_key_use_periodically(keys: KeyRing, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await keys.flush_last_used()


def lifespan_for(
    settings: Settings,
    routes: Sequence[BaseRoute] = (),
    batch: MetricBatch | None = None,
    access_log: AccessLog | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[LifespanState]]:
    """``routes``: the app's routes in routing order (the response cache's table);
    ``batch`` and ``access_log``: the process's buffers, flushed here."""
    batch = batch or MetricBatch()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[LifespanState]:
        async with AsyncExitStack() as stack:
            engine = create_engine(settings.database_url, settings.db)
            capacity = settings.db.pool_size + settings.db.max_overflow
            instrument_pool(engine, capacity=capacity)
            time_statements(engine.sync_engine)
            stack.push_async_callback(_dispose, engine, capacity)

            redis = cache_redis_client(settings)
            stack.push_async_callback(redis.aclose)

            auth = settings.auth
            keys = KeyRing(
                engine,
                settings.api_key_secret,
                ttl_s=auth.key_cache_ttl_s,
                max_entries=auth.key_cache_max_entries,
                unknown_ttl_s=auth.unknown_key_ttl_s,
            )
            # Unwound before the engine is disposed: the last uses are written.
            stack.push_async_callback(keys.flush_last_used)
            recorder = asyncio.create_task(
                _record_key_use_periodically(keys, auth.last_used_flush_s), name="key-use"
            )
            stack.push_async_callback(_cancel, recorder)

            limits = settings.rate_limit
            limiter = RateLimiter(
                redis,
                namespace=settings.cache.namespace,
                batch=limits.batch,
                allowance_ttl_s=limits.allowance_ttl_s,
                op_timeout_s=limits.op_timeout_s,
                # Its own breaker: a slow limiter must not switch the cache off, nor
                # the other way round.
                breaker=CircuitBreaker(
                    failures=settings.cache.breaker_failures,
                    reset_s=settings.cache.breaker_reset_s,
                ),
                metrics=batch,
            )

            cache = await stack.enter_async_context(
                running_cache(settings, redis, batch, routes, copies=[keys])
            )

            # The stack unwinds in reverse: at shutdown the flusher stops, the buffers are
            # flushed one last time, then the cache, Redis and the engine close.
            stack.callback(_flush_buffers, batch, access_log)
            flusher = asyncio.create_task(
                _flush_periodically(batch, settings.metrics.flush_interval_s),
                name="metric-flush",
            )
            stack.push_async_callback(_cancel, flusher)

            if settings.server.gc_freeze:
                _freeze_startup_objects()
            yield {
                "resources": Resources(
                    settings=settings,
                    engine=engine,
                    reads=create_read_engine(engine, settings.db),
                    sessions=create_session_factory(engine),
                    cache_redis=redis,
                    invalidator=cache.invalidator,
                    response_cache=cache.response_cache,
                    cache_metrics=cache.counters,
                    api_keys=keys,
                    rate_limiter=limiter,
                    metric_batch=batch,
                )
            }

    return lifespan


async def _dispose(engine: AsyncEngine, capacity: int) -> None:
    await engine.dispose()
    forget_pool(capacity=capacity)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _flush_buffers(batch: MetricBatch, access_log: AccessLog | None) -> None:
    batch.flush()
    if access_log is not None:
        access_log.flush()
