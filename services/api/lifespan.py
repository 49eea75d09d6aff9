"""Build the process's resources after fork, dispose of them at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypedDict

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.routing import BaseRoute

from services.api.cache_routes import ApiCache, RouteTable
from services.core.access_log import AccessLog
from services.core.cache import CacheCounters, TagInvalidator
from services.core.cache.breaker import CircuitBreaker
from services.core.cache.invalidation import InvalidationListener
from services.core.cache.l1 import LocalCache
from services.core.cache.redis_tier import RedisTier
from services.core.cache.tiered import TieredCache
from services.core.db import create_engine, create_session_factory
from services.core.metric_batch import MetricBatch
from services.core.pool_metrics import forget_pool, instrument_pool
from services.core.settings import Settings
from services.core.timing import time_statements


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache_redis: Redis
    # Writes invalidate even when this process does not cache (others may).
    invalidator: TagInvalidator
    # None when ``cache.enabled`` is off.
    response_cache: ApiCache | None
    cache_metrics: CacheCounters
    # This process's metric buffer (tests flush it before reading the registry).
    metric_batch: MetricBatch


class LifespanState(TypedDict):
    resources: Resources


def create_cache_redis(settings: Settings) -> Redis:
    # Short timeouts: the cache must never make a request slow (DESIGN.md §4).
    return Redis.from_url(
        settings.cache_redis_url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=settings.redis.connect_timeout_s,
        max_connections=settings.redis.max_connections,
        health_check_interval=30,
    )


def create_pubsub_redis(settings: Settings) -> Redis:
    # A subscriber waits for messages: no read timeout, but a ping now and then notices a
    # dead connection that no FIN announced. It is off the request path, so it may take
    # its time to connect.
    return Redis.from_url(
        settings.cache_redis_url,
        socket_connect_timeout=1.0,
        socket_keepalive=True,
        health_check_interval=5,
    )


def _freeze_startup_objects() -> None:
    """Move everything built so far (modules, the app, routes, models, pools) out of the
    garbage collector's reach.

    They live as long as the process, yet every full collection walked all of them while
    the event loop stood still: at ~25k req/s on one worker that was a 72 ms p99 (4.8 ms
    frozen; the same with the collector off). Collect first, so no startup garbage is
    frozen with them.
    """
    gc.collect()
    gc.freeze()


async def _flush_periodically(batch: MetricBatch, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        batch.flush()


def lifespan_for(
    settings: Settings,
    routes: Sequence[BaseRoute] = (),
    batch: MetricBatch | None = None,
    access_log: AccessLog | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[LifespanState]]:
    """``routes``: the app's routes in routing order (the response cache's table);
    ``batch`` and ``access_log``: the process's buffers, flushed here."""
    batch = batch or MetricBatch()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[LifespanState]:
        engine = create_engine(settings.database_url, settings.db)
        capacity = settings.db.pool_size + settings.db.max_overflow
        instrument_pool(engine, capacity=capacity)
        time_statements(engine.sync_engine)
        cache_redis = create_cache_redis(settings)
        pubsub_redis = create_pubsub_redis(settings)
        config = settings.cache
        metrics = CacheCounters(batch)
        flusher = asyncio.create_task(
            _flush_periodically(batch, settings.metrics.flush_interval_s),
            name="metric-flush",
        )
        breaker = CircuitBreaker(failures=config.breaker_failures, reset_s=config.breaker_reset_s)
        tiers = None
        if config.enabled:
            tiers = TieredCache(
                config,
                l1=LocalCache(
                    max_entries=config.l1_max_entries,
                    ttl_s=config.l1_ttl_s,
                    on_evict=metrics.l1_eviction,
                ),
                l2=RedisTier(
                    cache_redis,
                    namespace=config.namespace,
                    op_timeout_s=config.op_timeout_s,
                    lease_s=config.lock_lease_s,
                    breaker=breaker,
                    metrics=metrics,
                ),
                metrics=metrics,
            )
        invalidator = TagInvalidator(
            cache_redis,
            namespace=config.namespace,
            marker_ttl_s=config.tag_marker_ttl_s,
            op_timeout_s=config.op_timeout_s,
            breaker=breaker,
            metrics=metrics,
            drop_local=tiers.drop_tags if tiers is not None else lambda tags: None,
        )
        listener_task = None
        if tiers is not None:
            local = tiers

            async def resync() -> None:
                local.clear_local()  # broadcasts sent while we were away are lost
                await invalidator.invalidate(())  # send what Redis trouble deferred

            listener = InvalidationListener(
                pubsub_redis, invalidator.channel, on_tags=tiers.drop_tags, on_subscribed=resync
            )
            listener_task = asyncio.create_task(listener.run(), name="cache-invalidation")
        if settings.server.gc_freeze:
            _freeze_startup_objects()
        try:
            yield {
                "resources": Resources(
                    settings=settings,
                    engine=engine,
                    sessions=create_session_factory(engine),
                    cache_redis=cache_redis,
                    invalidator=invalidator,
                    response_cache=(
                        ApiCache(tiers=tiers, routes=RouteTable(routes, config.namespace))
                        if tiers is not None
                        else None
                    ),
                    cache_metrics=metrics,
                    metric_batch=batch,
                )
            }
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            batch.flush()
            if access_log is not None:
                access_log.flush()
            if listener_task is not None:
                listener_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener_task
            await pubsub_redis.aclose()
            await cache_redis.aclose()
            await engine.dispose()
            forget_pool(capacity=capacity)

    return lifespan
