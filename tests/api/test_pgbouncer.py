"""Transaction pooling proof: many concurrent requests, few server connections, no
prepared-statement errors, behind PgBouncer 1.24 (statements cached, the pooler tracks
them) and Debian 12's 1.18 (safe mode) — and a control showing the same load breaks a
default asyncpg setup behind 1.18, so the safe mode's proof cannot pass by accident."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.api import make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint
from tests.support.factories import create_product, create_user

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
