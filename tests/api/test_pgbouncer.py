"""Transaction pooling proof: many concurrent requests, few server connections, no
prepared-statement errors, behind PgBouncer 1.24 (statements cached, the pooler tracks
them) and Debian 12's 1.18 (safe mode) — and a control showing the same load breaks a
default asyncpg setup behind 1.18, so the safe mode's proof cannot pass by accident.
The lean reads: in autocommit behind a pooler that tracks prepared statements (two round
trips saved), inside a transaction behind one that does not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.servers import free_port
from services.core.settings import Settings
from tests.support.api import RunningApi, make_settings, running_api
from tests.support.api_processes import pgbouncer_totals
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint, pgbouncer_in_front_of
from tests.support.factories import create_product, create_user, place_order

CONCURRENCY = 240


async def test_concurrent_requests_through_transaction_pooling(
    client: httpx.AsyncClient,
    migrated_postgres: DatabaseEndpoint,
    pooler: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=10_000)
    # 40 client connections per process onto PgBouncer's pool of 4 server connections.
    settings = make_settings(
        migrated_postgres, pooler, cache_redis_server, pool_size=20, max_overflow=20
    )
    assert settings.db.pooler_tracks_prepared_statements == pooler.tracks_prepared_statements
    async with running_api(settings) as api:
        requests = []
        for i in range(CONCURRENCY):
            if i % 3 == 0:
                requests.append(
                    api.client.post(
                        "/orders",
                        json={
                            "user_id": user["id"],
                            "items": [{"product_id": product["id"], "quantity": 1}],
                        },
                    )
                )
            elif i % 3 == 1:
                requests.append(api.client.get(f"/users/{user['id']}/orders"))
            else:
                requests.append(api.client.get("/products", params={"category": "cat0"}))
        responses = await asyncio.gather(*requests)
    failures = [(r.status_code, r.text) for r in responses if r.status_code >= 400]
    assert failures == []
    assert len(responses) == CONCURRENCY


async def test_control_default_asyncpg_breaks_under_transaction_pooling(
    old_pgbouncer_server: DatabaseEndpoint,
) -> None:
    # PgBouncer >= 1.21 tracking prepared statements would not break it: only the pooler
    # that cannot is the control.
    engine = create_async_engine(old_pgbouncer_server.url, pool_size=20, max_overflow=0)

    async def query(i: int) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT CAST(:i AS integer) + 1"), {"i": i})
            await connection.commit()

    errors: list[BaseException] = []
    try:
        for _ in range(20):
            results = await asyncio.gather(*(query(i) for i in range(100)), return_exceptions=True)
            errors += [r for r in results if isinstance(r, BaseException)]
            if errors:
                break
    finally:
        await engine.dispose()
    assert errors, "the control should fail: is PgBouncer really in transaction mode?"
    assert any("prepared statement" in str(error) for error in errors), errors[:3]


def _reads_settings(
    postgres: DatabaseEndpoint,
    pgbouncer: DatabaseEndpoint,
    redis: RedisEndpoint,
    *,
    tracks: bool,
) -> Settings:
    """An api whose every read reaches the database (no response cache), with 40 client
    connections onto PgBouncer's pool of 4 server connections; ``tracks`` is what the
    settings say of the pooler (reads in autocommit, statements cached)."""
    settings = make_settings(
        postgres,
        pgbouncer,
        redis,
        pool_size=20,
        max_overflow=20,
        pooler_tracks_prepared_statements=tracks,
    )
    return settings.model_copy(
        update={"cache": settings.cache.model_copy(update={"enabled": False})}
    )


@pytest.fixture
async def read_urls(client: httpx.AsyncClient) -> list[str]:
    """One URL of each lean read, over data made through the api."""
    user = await create_user(client)
    product = await create_product(client, stock=100)
    for _ in range(3):
        await place_order(client, user["id"], [(product["id"], 1)])
    return [
        f"/users/{user['id']}",
        f"/users/{user['id']}/orders",
        f"/products/{product['id']}",
        "/products?category=cat0",
    ]


async def _read_concurrently(client: httpx.AsyncClient, urls: list[str]) -> list[object]:
    """``CONCURRENCY`` reads at once: each a 200, or what failed instead."""
    results = await asyncio.gather(
        *(client.get(urls[i % len(urls)]) for i in range(CONCURRENCY)), return_exceptions=True
    )
    return [
        r if isinstance(r, BaseException) else (r.status_code, r.text)
        for r in results
        if isinstance(r, BaseException) or r.status_code != 200
    ]


async def test_reads_survive_transaction_pooling_in_the_mode_each_pooler_allows(
    read_urls: list[str],
    migrated_postgres: DatabaseEndpoint,
    pooler: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> None:
    settings = _reads_settings(
        migrated_postgres, pooler, cache_redis_server, tracks=pooler.tracks_prepared_statements
    )
    async with running_api(settings) as api:
        for _ in range(3):
            assert await _read_concurrently(api.client, read_urls) == []


@pytest.fixture
async def misconfigured_api(
    migrated_postgres: DatabaseEndpoint,
    old_pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> AsyncIterator[RunningApi]:
    # Started before the test, so the app's logging set-up comes before pytest's capture.
    settings = _reads_settings(
        migrated_postgres, old_pgbouncer_server, cache_redis_server, tracks=True
    )
    async with running_api(settings) as api:
        yield api


async def test_control_autocommit_reads_break_behind_a_pooler_that_cannot_track(
    read_urls: list[str],
    misconfigured_api: RunningApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outside a transaction the prepare and the execute of a read are two round trips
    the pooler may send to two server connections: settings that claim tracking behind
    PgBouncer 1.18 break, which is why the setting must say the truth."""
    failures: list[object] = []
    with caplog.at_level("ERROR"):
        for _ in range(20):
            failures += await _read_concurrently(misconfigured_api.client, read_urls)
            if failures:
                break
    assert failures, "autocommit reads should break: is PgBouncer in transaction mode?"
    errors = [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    assert any("prepared statement" in error for error in errors), errors[:3]


@pytest.fixture
def quiet_pgbouncer(
    servers_dir: Path, migrated_postgres: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    """A PgBouncer only the api under test uses, so its counters are that api's."""
    with pgbouncer_in_front_of(migrated_postgres, servers_dir / f"pgbouncer-{free_port()}") as pgb:
        yield pgb


async def _round_trips_of_one_read(
    settings: Settings, pgbouncer: DatabaseEndpoint, url: str
) -> tuple[int, int]:
    async with running_api(settings) as api:
        for _ in range(2):  # the first connection's set-up queries, then a steady state
            assert (await api.client.get(url)).status_code == 200
        before = pgbouncer_totals(pgbouncer)
        assert (await api.client.get(url)).status_code == 200
        after = pgbouncer_totals(pgbouncer)
    transactions, queries = (n - m for n, m in zip(after, before, strict=True))
    return transactions, queries


async def test_a_read_is_one_round_trip_when_the_pooler_tracks_prepared_statements(
    read_urls: list[str],
    migrated_postgres: DatabaseEndpoint,
    quiet_pgbouncer: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> None:
    costs = {}
    for tracks in (False, True):
        settings = _reads_settings(
            migrated_postgres, quiet_pgbouncer, cache_redis_server, tracks=tracks
        )
        costs[tracks] = await _round_trips_of_one_read(settings, quiet_pgbouncer, read_urls[1])
    # Safe mode: BEGIN, prepare, execute, ROLLBACK. Tracked: the cached statement's execute.
    assert costs == {False: (1, 4), True: (1, 1)}, costs


@pytest.mark.parametrize(("tracks", "round_trips"), [(False, 6), (True, 4)])
async def test_an_order_holds_its_transaction_for_a_few_round_trips(
    migrated_postgres: DatabaseEndpoint,
    quiet_pgbouncer: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
    tracks: bool,
    round_trips: int,
) -> None:
    """BEGIN, the placing statement, the recording of the answer under the
    Idempotency-Key, COMMIT, however many lines the order has: six round trips in safe
    mode (each statement prepared, then executed), four with cached statements."""
    settings = make_settings(
        migrated_postgres,
        quiet_pgbouncer,
        cache_redis_server,
        pooler_tracks_prepared_statements=tracks,
    )
    async with running_api(settings) as api:
        user = await create_user(api.client, f"rt-{free_port()}@example.com")
        products = [(await create_product(api.client, stock=100))["id"] for _ in range(5)]
        costs = []
        # The first order on a connection also pays its type introspection: left out.
        for n, lines in enumerate([products[:1], products[:1], products]):
            before = pgbouncer_totals(quiet_pgbouncer)
            response = await place_order(
                api.client,
                user["id"],
                [(product_id, 1) for product_id in lines],
                **{"Idempotency-Key": f"rt-{free_port()}-{n}"},
            )
            assert response.status_code == 201, response.text
            after = pgbouncer_totals(quiet_pgbouncer)
            costs.append(tuple(m - k for m, k in zip(after, before, strict=True)))
    assert costs[1:] == [(1, round_trips), (1, round_trips)], costs
