"""The cache Redis pool is opened to its bound at start, so it does not grow with each
new peak of load (the soak checks that no connection count grows), and a Redis that is
down at start does not stop the api from starting."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from devstack.servers import LOCALHOST, free_port
from services.api.cache.assembly import open_pool
from tests.support.api import make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint


async def clients(redis: RedisEndpoint, name: str) -> int:
    admin = Redis.from_url(redis.url)
    try:
        listed = await admin.client_list()
        return sum(1 for client in listed if client["name"] == name)
    finally:
        await admin.aclose()


async def test_the_pool_opens_its_connections_once_and_keeps_using_them(
    cache_redis_server: RedisEndpoint,
) -> None:
    name = f"pool-{time.monotonic_ns()}"
    redis = Redis.from_url(cache_redis_server.url, max_connections=8, client_name=name)
    try:
        assert await open_pool(redis, 8) == 8
        assert await clients(cache_redis_server, name) == 8
        # A burst of as many commands at once as the pool holds opens nothing new.
        assert all(await asyncio.gather(*(redis.ping() for _ in range(8))))
        assert await clients(cache_redis_server, name) == 8
        pool = redis.connection_pool
        assert len(pool._available_connections) == 8
        assert not pool._in_use_connections
    finally:
        await redis.aclose()


async def test_a_redis_that_is_down_opens_nothing_and_raises_nothing() -> None:
    redis = Redis.from_url(f"redis://{LOCALHOST}:{free_port()}/0", socket_connect_timeout=0.1)
    try:
        started = time.monotonic()
        assert await open_pool(redis, 64) == 0
        assert time.monotonic() - started < 2
        assert not redis.connection_pool._in_use_connections
    finally:
        await redis.aclose()


async def test_the_api_starts_with_its_pool_open_and_without_redis(
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> None:
    settings = make_settings(migrated_postgres, pgbouncer_server, cache_redis_server)
    settings = settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"max_connections": 12})}
    )
    async with running_api(settings) as api:
        pool = api.resources.cache_redis.connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        assert opened == 12
        assert (await api.client.get("/livez")).status_code == 200
    down = RedisEndpoint(LOCALHOST, free_port(), cache_redis_server.process)
    settings = make_settings(migrated_postgres, pgbouncer_server, down)
    async with running_api(settings) as api:
        assert (await api.client.get("/livez")).status_code == 200
