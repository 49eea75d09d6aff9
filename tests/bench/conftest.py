"""The api in-process on real Postgres, PgBouncer and Redis, for the floors' statement checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as redis

from services.core.settings import Settings
from tests.support.api import RunningApi, make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint


@pytest.fixture(scope="session")
def settings(
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> Settings:
    return make_settings(migrated_postgres, pgbouncer_server, cache_redis_server)


@pytest.fixture(scope="session")
async def api(settings: Settings) -> AsyncIterator[RunningApi]:
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def clean_cache(api: RunningApi, cache_redis_server: RedisEndpoint) -> None:
    """Ids restart with every test: a response cached by an earlier test must not leak."""
    connection = redis.Redis.from_url(cache_redis_server.url)
    try:
        await connection.flushdb()
    finally:
        await connection.aclose()
    if api.resources.response_cache is not None:
        api.resources.response_cache.tiers.clear_local()


@pytest.fixture
async def client(api: RunningApi, clean_database: None, clean_cache: None) -> httpx.AsyncClient:
    return api.client
