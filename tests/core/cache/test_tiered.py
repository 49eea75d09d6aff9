"""TieredCache against a real Redis: stale-while-revalidate, the invalidation race, and
stale-if-error while the database is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from services.core.cache import CacheCounters, CachePolicy, TagInvalidator
from services.core.cache.breaker import CircuitBreaker
from services.core.cache.l1 import LocalCache
from services.core.cache.redis_tier import RedisTier
from services.core.cache.tiered import Computed, TieredCache
from services.core.settings import CacheSettings
from services.core.telemetry.metric_batch import MetricBatch
from tests.support.endpoints import RedisEndpoint

KEY = "test:e:/things:abc"


@pytest.fixture
async def client(cache_redis_server: RedisEndpoint) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(cache_redis_server.url)
    await connection.flushdb()
    try:
        yield connection
    finally:
        await connection.aclose()


def tiers(
    client: redis.Redis, *, stale_if_error_s: int = 600
) -> tuple[TieredCache, TagInvalidator]:
    settings = CacheSettings(namespace="test", l1_ttl_s=0.05, stale_if_error_s=stale_if_error_s)
    metrics = CacheCounters(MetricBatch())
    breaker = CircuitBreaker(failures=3, reset_s=1)
    cache = TieredCache(
        settings,
        l1=LocalCache(max_entries=100, ttl_s=settings.l1_ttl_s),
        l2=RedisTier(
            client,
            namespace="test",
            op_timeout_s=1.0,
            lease_s=5,
            breaker=breaker,
            metrics=metrics,
            stale_if_error_s=stale_if_error_s,
        ),
        metrics=metrics,
    )
    invalidator = TagInvalidator(
        client,
        namespace="test",
        marker_ttl_s=60,
        op_timeout_s=1.0,
        breaker=breaker,
        metrics=metrics,
        drop_local=cache.drop_tags,
    )
    return cache, invalidator


class Origin:
    """The slow way: counts calls, optionally waits for a signal."""

    def __init__(self) -> None:
        self.calls = 0
        self.version = 1
        self.gate: asyncio.Event | None = None
        self.database_down = False

    async def __call__(self) -> Computed:
        self.calls += 1
        if self.database_down:
            return Computed(503, [(b"content-type", b"application/problem+json")], b"{}")
        version = self.version
        if self.gate is not None:
            await self.gate.wait()
        return Computed(200, [(b"content-type", b"application/json")], b'{"v": %d}' % version)


POLICY = CachePolicy(ttl_s=0.3, stale_s=10, tags=("thing:1",))


async def test_an_expired_entry_is_served_stale_while_one_request_recomputes(
    client: redis.Redis,
) -> None:
    cache, _ = tiers(client)
    origin = Origin()
    assert (await cache.fetch(KEY, "/things", POLICY, {}, origin)).state == "miss"
    await asyncio.sleep(0.4)  # past the TTL, within the stale window
    origin.version, origin.gate = 2, asyncio.Event()
    leader = asyncio.create_task(cache.fetch(KEY, "/things", POLICY, {}, origin))
    await asyncio.sleep(0.05)
    others = await asyncio.gather(
        *(cache.fetch(KEY, "/things", POLICY, {}, origin) for _ in range(20))
    )
    assert {o.state for o in others} == {"stale"}
    assert {o.entry.body for o in others if o.entry} == {b'{"v": 1}'}
    origin.gate.set()
    fresh = await leader
    assert fresh.state == "miss"
    assert fresh.entry is not None
    assert fresh.entry.body == b'{"v": 2}'
    assert origin.calls == 2


async def test_a_recomputation_that_started_before_an_invalidation_is_not_stored(
    client: redis.Redis,
) -> None:
    cache, invalidator = tiers(client)
    origin = Origin()
    origin.gate = asyncio.Event()
    reader = asyncio.create_task(cache.fetch(KEY, "/things", POLICY, {}, origin))
    await asyncio.sleep(0.05)  # the reader has read "the database" (version 1)...
    origin.version = 2  # ...a write commits...
    assert await invalidator.invalidate(["thing:1"])  # ...and invalidates
    origin.gate.set()
    served = await reader
    assert served.entry is not None
    assert served.entry.body == b'{"v": 1}'  # the reader's own answer, concurrent with the write
    assert not await client.exists(KEY)  # but never stored for anyone else
    origin.gate = None
    after = await cache.fetch(KEY, "/things", POLICY, {}, origin)
    assert after.state == "miss"
    assert after.entry is not None
    assert after.entry.body == b'{"v": 2}'


async def test_while_the_database_is_down_an_invalidated_entry_answers_and_only_then(
    client: redis.Redis,
) -> None:
    cache, invalidator = tiers(client)
    origin = Origin()
    await cache.fetch(KEY, "/things", POLICY, {}, origin)
    assert await invalidator.invalidate(["thing:1"])
    origin.database_down = True
    # Another process (nothing of its own remembered): the entry L2 kept answers.
    elsewhere, _ = tiers(client)
    down = await elsewhere.fetch(KEY, "/things", POLICY, {}, origin)
    assert down.state == "stale-if-error"
    assert down.entry is not None
    assert down.entry.body == b'{"v": 1}'
    origin.database_down, origin.version = False, 2
    back = await elsewhere.fetch(KEY, "/things", POLICY, {}, origin)
    assert (back.state, back.entry.body if back.entry else None) == ("miss", b'{"v": 2}')


async def test_an_entry_past_its_stale_window_answers_only_while_the_database_is_down(
    client: redis.Redis,
) -> None:
    cache, _ = tiers(client)
    origin = Origin()
    short = CachePolicy(ttl_s=0.1, stale_s=0.1, tags=("thing:1",))
    await cache.fetch(KEY, "/things", short, {}, origin)
    await asyncio.sleep(0.3)
    origin.database_down = True
    elsewhere, _ = tiers(client)
    assert (await elsewhere.fetch(KEY, "/things", short, {}, origin)).state == "stale-if-error"


async def test_without_redis_a_process_answers_from_the_last_entry_it_saw(
    client: redis.Redis,
) -> None:
    cache, invalidator = tiers(client)
    origin = Origin()
    await cache.fetch(KEY, "/things", POLICY, {}, origin)
    assert await invalidator.invalidate(["thing:1"])
    await client.flushdb()  # L2 has nothing for anyone
    origin.database_down = True
    down = await cache.fetch(KEY, "/things", POLICY, {}, origin)
    assert down.state == "stale-if-error"
    assert down.entry is not None
    assert down.entry.body == b'{"v": 1}'


async def test_stale_if_error_can_be_switched_off(client: redis.Redis) -> None:
    cache, invalidator = tiers(client, stale_if_error_s=0)
    origin = Origin()
    await cache.fetch(KEY, "/things", POLICY, {}, origin)
    assert await invalidator.invalidate(["thing:1"])
    origin.database_down = True
    down = await cache.fetch(KEY, "/things", POLICY, {}, origin)
    assert (down.state, down.entry) == ("miss", None)
    assert down.computed is not None
    assert down.computed.status == 503
