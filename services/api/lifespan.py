"""Build the process's resources after fork, dispose of them at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypedDict

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.core.db import create_engine, create_session_factory
from services.core.pool_metrics import forget_pool, instrument_pool
from services.core.settings import Settings
from services.core.timing import time_statements


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache_redis: Redis


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


def lifespan_for(settings: Settings):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[LifespanState]:
        engine = create_engine(settings.database_url, settings.db)
        capacity = settings.db.pool_size + settings.db.max_overflow
        instrument_pool(engine, capacity=capacity)
        time_statements(engine.sync_engine)
        cache_redis = create_cache_redis(settings)
        try:
            yield {
                "resources": Resources(
                    settings=settings,
                    engine=engine,
                    sessions=create_session_factory(engine),
                    cache_redis=cache_redis,
                )
            }
        finally:
            await cache_redis.aclose()
            await engine.dispose()
            forget_pool(capacity=capacity)

    return lifespan
