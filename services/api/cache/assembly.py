"""The api's response cache, assembled from settings for the lifetime of one process.

:func:`running_cache` builds the pieces of ``services.core.cache`` the way the api uses
them — L1 in front of the Redis tier, one circuit breaker for every Redis call, the tag
invalidator, and the listener that applies other processes' invalidations to L1 and to
the other local copies it is given (the API-key ring) — and stops the listener at
shutdown. With ``cache.enabled`` off there is no L1, but the invalidator and the
listener still run: this process's writes must still drop what the other processes
cached, and revoked keys must still reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.routing import BaseRoute

from services.api.cache.route_table import RouteTable
from services.core.cache import CacheCounters, TagInvalidator
from services.core.cache.breaker import CircuitBreaker
from services.core.cache.invalidation import InvalidationListener
from services.core.cache.l1 import LocalCache
from services.core.cache.redis_tier import RedisTier
from services.core.cache.tiered import TieredCache
from services.core.settings import Settings
from services.core.telemetry.metric_batch import MetricBatch

_log = logging.getLogger("stampede.cache")


@dataclass(frozen=True, slots=True)
class ApiCache:
    """What the response-cache middleware needs."""

    tiers: TieredCache
    routes: RouteTable


@dataclass(frozen=True, slots=True)
class CacheRuntime:
    # Writes invalidate even when this process does not cache (others may).
    invalidator: TagInvalidator
    counters: CacheCounters
    # None when ``cache.enabled`` is off.
    response_cache: ApiCache | None


class LocalCopy(Protocol):
    """Something a process keeps that broadcast invalidations must reach."""

    def drop_tags(self, tags: Iterable[str]) -> None: ...

    def clear(self) -> None: ...


def cache_redis_client(settings: Settings) -> Redis:
    # Short timeouts: the cache must never make a request slow.
    return Redis.from_url(
        settings.cache_redis_url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=settings.redis.connect_timeout_s,
        max_connections=settings.redis.max_connections,
        health_check_interval=30,
    )


async def open_pool(redis: Redis, count: int) -> int:
    """Open ``count`` connections of ``redis``'s pool now and put them back idle; returns
    how many opened.

    redis-py opens a pool connection when more commands are in flight at once than ever
    before and keeps it, so a pool left to itself grows with each new peak of load, up to
    its bound, and each new connection is made on the request path, at the peak, with the
    cache's 0.1 s connect timeout. Opened at start, the pool is its final size from the
    first request on (a fixed count of sockets that the soak can check does not grow),
    and a Redis that refuses the count (``maxclients``) is seen at start. Best effort:
    with Redis down the api still starts, and the pool opens connections as it did.
    """
    pool = redis.connection_pool
    taken = []
    try:
        for _ in range(count):
            taken.append(await pool.get_connection())  # type: ignore[no-untyped-call]
    except (RedisError, OSError) as error:
        _log.warning(
            "cache Redis: opened %d of %d pool connections at start (%r); the rest open on demand",
            len(taken),
            count,
            error,
        )
    finally:
        for connection in taken:
            await pool.release(connection)
    return len(taken)


def _subscriber_client(settings: Settings) -> Redis:
    # A subscriber waits for messages: no read timeout, but a ping now and then notices a
    # dead connection that no FIN announced. It is off the request path, so it may take
    # its time to connect.
    return Redis.from_url(
        settings.cache_redis_url,
        socket_connect_timeout=1.0,
        socket_keepalive=True,
        health_check_interval=5,
    )


@contextlib.asynccontextmanager
async def running_cache(
    settings: Settings,
    redis: Redis,
    batch: MetricBatch,
    routes: Sequence[BaseRoute],
    copies: Sequence[LocalCopy] = (),
) -> AsyncIterator[CacheRuntime]:
    """``routes``: the app's routes in routing order (the middleware's route table);
    ``batch``: the process's metric buffer, which exports the cache counters;
    ``copies``: what else broadcast invalidations must reach."""
    if settings.redis.open_at_start:
        await open_pool(redis, settings.redis.max_connections)
    config = settings.cache
    counters = CacheCounters(batch)
    breaker = CircuitBreaker(failures=config.breaker_failures, reset_s=config.breaker_reset_s)
    tiers = None
    if config.enabled:
        tiers = TieredCache(
            config,
            l1=LocalCache(
                max_entries=config.l1_max_entries,
                ttl_s=config.l1_ttl_s,
                on_evict=counters.l1_eviction,
            ),
            l2=RedisTier(
                redis,
                namespace=config.namespace,
                op_timeout_s=config.op_timeout_s,
                lease_s=config.lock_lease_s,
                breaker=breaker,
                metrics=counters,
                stale_if_error_s=config.stale_if_error_s,
            ),
            metrics=counters,
        )
    local = tiers

    def drop_tags(tags: Iterable[str]) -> None:
        tags = list(tags)
        if local is not None:
            local.drop_tags(tags)
        for copy in copies:
            copy.drop_tags(tags)

    invalidator = TagInvalidator(
        redis,
        namespace=config.namespace,
        marker_ttl_s=config.tag_marker_ttl_s,
        op_timeout_s=config.op_timeout_s,
        breaker=breaker,
        metrics=counters,
        drop_local=drop_tags,
    )

    async def resync() -> None:
        # Broadcasts sent while we were away are lost.
        if local is not None:
            local.clear_local()
        for copy in copies:
            copy.clear()
        await invalidator.invalidate(())  # send what Redis trouble deferred

    subscriber = _subscriber_client(settings)
    listener = InvalidationListener(
        subscriber, invalidator.channel, on_tags=drop_tags, on_subscribed=resync
    )
    listening = asyncio.create_task(listener.run(), name="cache-invalidation")
    try:
        yield CacheRuntime(
            invalidator=invalidator,
            counters=counters,
            response_cache=ApiCache(tiers=tiers, routes=RouteTable(routes, config.namespace))
            if tiers is not None
            else None,
        )
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await subscriber.aclose()
