"""What each api process builds at startup and every request may use."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api.cache.assembly import ApiCache
from services.core.api_keys import KeyRing
from services.core.cache import CacheCounters, TagInvalidator
from services.core.rate_limit import RateLimiter
from services.core.settings import Settings
from services.core.telemetry.metric_batch import MetricBatch


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    # The lean reads' connections: the engine's pool, in the read mode the settings chose.
    reads: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache_redis: Redis
    # Writes invalidate even when this process does not cache (others may).
    invalidator: TagInvalidator
    # None when ``cache.enabled`` is off.
    response_cache: ApiCache | None
    cache_metrics: CacheCounters
    # This process's cache of API keys (services.core.api_keys).
    api_keys: KeyRing
    # This process's share of the rate limits (services.core.rate_limit).
    rate_limiter: RateLimiter
    # This process's metric buffer (tests flush it before reading the registry).
    metric_batch: MetricBatch
