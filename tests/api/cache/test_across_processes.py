"""The cache across real api processes (each under its own PYTHONHASHSEED): shared
keys, invalidation broadcast, one recomputation for the fleet, and Redis outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from devstack.servers import RedisServer, free_port, start
from tests.support.api_processes import ApiProcess, api_env, api_processes, pgbouncer_totals
from tests.support.endpoints import (
    DatabaseEndpoint,
    RedisEndpoint,
    pgbouncer_in_front_of,
)
from tests.support.keys import bearer

pytestmark = pytest.mark.slow


@pytest.fixture
async def seeded(clean_database: None, db: asyncpg.Connection) -> list[int]:
    """Ten products in category ``cold``, written straight to Postgres."""
    rows = await db.fetch(
        "INSERT INTO products (name, category, price_cents, stock)"
        " SELECT 'p' || i, 'cold', 100, 50 FROM generate_series(1, 10) AS i RETURNING id"
    )
    return sorted(row["id"] for row in rows)


@pytest.fixture
def own_redis(servers_dir: Path) -> Iterator[RedisEndpoint]:
    server = RedisServer(
        workdir=servers_dir / f"redis-{free_port()}", port=free_port(), role="cache"
    )
    with start(server) as process:
        process.wait_ready()
        yield RedisEndpoint("127.0.0.1", server.port, process)


@pytest.fixture
def quiet_pgbouncer(
    servers_dir: Path, migrated_postgres: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    """A PgBouncer only the api processes under test use, so its counters are theirs."""
    workdir = servers_dir / f"pgbouncer-{free_port()}"
    with pgbouncer_in_front_of(migrated_postgres, workdir) as pgbouncer:
        yield pgbouncer


@pytest.fixture
def two_apis(
    tmp_path: Path,
    migrated_postgres: DatabaseEndpoint,
    quiet_pgbouncer: DatabaseEndpoint,
    own_redis: RedisEndpoint,
) -> Iterator[list[ApiProcess]]:
    env = api_env(migrated_postgres, quiet_pgbouncer, own_redis)
    with api_processes(env, tmp_path) as apis:
        yield apis


@pytest.fixture
async def http(api_token: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=bearer(api_token)) as client:
        yield client


async def test_a_response_cached_by_one_process_is_a_hit_in_the_other(
    seeded: list[int], two_apis: list[ApiProcess], http: httpx.AsyncClient
) -> None:
    a, b = two_apis
    url = "/products?limit=5&category=cold"
    first = await http.get(a.url + url)
    assert first.headers["x-cache"] == "miss"
    # Another process, another hash seed, the parameters in another order: same key.
    second = await http.get(b.url + "/products?category=cold&limit=5")
    assert second.headers["x-cache"] == "hit"
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]


async def test_invalidation_reaches_the_other_process_within_100_ms(
    seeded: list[int], two_apis: list[ApiProcess], http: httpx.AsyncClient
) -> None:
    a, b = two_apis
    url = f"/products/{seeded[0]}"
    # Each process computes another product first: the measured recomputation must not
    # also pay for the process's first one (its first database connection, the lazy
    # imports and route set-up of a first request), which is not what this test is about.
    for api, other in zip(two_apis, seeded[1:], strict=False):
        warm = await http.get(f"{api.url}/products/{other}")
        assert warm.headers["x-cache"] == "miss"
    for api in (a, b, a, b):
        await http.get(api.url + url)
    assert (await http.get(b.url + url)).headers["x-cache"] == "hit"  # B's L1 holds it

    patched = await http.patch(a.url + url, json={"stock": 7})
    assert patched.status_code == 200
    written = time.monotonic()
    seen = None
    while time.monotonic() - written < 1.0:
        response = await http.get(b.url + url)
        if response.json()["stock"] == 7:
            seen = time.monotonic() - written
            break
    assert seen is not None, "process B never saw the write"
    assert seen < 0.1, f"process B served the old product for {seen * 1000:.0f} ms"


async def test_a_cold_key_under_load_in_two_processes_is_computed_once(
    seeded: list[int],
    two_apis: list[ApiProcess],
    quiet_pgbouncer: DatabaseEndpoint,
    http: httpx.AsyncClient,
) -> None:
    # Warm each process's connection pool, then learn what one recomputation costs. Each
    # process computes a page of its own: one the other stored would be an L2 hit, and
    # that process's first connection (its dialect's set-up queries) would then be
    # counted below. (/readyz no longer touches the database.)
    for index, api in enumerate(two_apis):
        warm = await http.get(f"{api.url}/products?category=warm-{index}")
        assert warm.headers["x-cache"] == "miss"
    before = pgbouncer_totals(quiet_pgbouncer)
    await http.get(two_apis[0].url + "/products?category=other")
    one_request = tuple(
        n - m for n, m in zip(pgbouncer_totals(quiet_pgbouncer), before, strict=True)
    )
    assert one_request[0] == 1  # one transaction

    before = pgbouncer_totals(quiet_pgbouncer)
    responses = await asyncio.gather(
        *(http.get(two_apis[i % 2].url + "/products?category=cold") for i in range(200))
    )
    after = pgbouncer_totals(quiet_pgbouncer)

    assert [r.status_code for r in responses] == [200] * 200
    assert len({r.content for r in responses}) == 1
    assert [r.headers["x-cache"] for r in responses].count("miss") == 1
    assert tuple(n - m for n, m in zip(after, before, strict=True)) == one_request


async def test_a_cache_outage_fails_no_request_and_hits_resume_after_it(
    seeded: list[int],
    tmp_path: Path,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    own_redis: RedisEndpoint,
    http: httpx.AsyncClient,
) -> None:
    env = api_env(migrated_postgres, pgbouncer_server, own_redis)
    # A short L1 so that hits after the outage must come from Redis again.
    env["STAMPEDE_CACHE__L1_TTL_S"] = "0.2"
    urls = ["/products?category=cold", *(f"/products/{pid}" for pid in seeded[:4])]
    statuses: list[int] = []
    latencies: list[float] = []

    async def load(apis: list[ApiProcess], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            batch = await asyncio.gather(
                *(http.get(api.url + url) for api in apis for url in urls),
                http.patch(apis[0].url + urls[1], json={"stock": int(started) % 100}),
            )
            latencies.append(time.monotonic() - started)

            statuses.extend(r.status_code for r in batch)

    with api_processes(env, tmp_path) as apis:
        await load(apis, 1.0)
        own_redis.process.stop()
        await load(apis, 2.0)
        restarted = start(
            RedisServer(workdir=tmp_path / "redis-again", port=own_redis.port, role="cache")
        )
        try:
            restarted.wait_ready()
            client = redis.Redis.from_url(own_redis.url)
            try:
                back = time.monotonic()
                resumed = None
                while resumed is None and time.monotonic() - back < 5:
                    await load(apis, 0.2)
                    # Not a list: the PATCHes of the load invalidate those all the time.
                    response = await http.get(apis[1].url + urls[2])
                    stored = [k async for k in client.scan_iter(match="*:e:*")]
                    if response.headers["x-cache"] == "hit" and stored:
                        resumed = time.monotonic() - back
            finally:
                await client.aclose()
        finally:
            restarted.stop()

    failures = [status for status in statuses if not 200 <= status < 300]
    assert failures == []
    assert len(statuses) > 100
    assert resumed is not None, "no cache hit from Redis within 5 s of its restart"
    # A batch (11 concurrent requests) never waits on a dead Redis; the worst case is a
    # recompute lock orphaned by the restart: one lock_wait_s (1 s), then computed.
    assert max(latencies) < 1.5, max(latencies)
    assert sorted(latencies)[len(latencies) * 9 // 10] < 0.25
