from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.support.endpoints import DatabaseEndpoint
from tests.support.factories import create_product, create_user, place_order


async def test_repeated_key_returns_the_original_answer(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=10)
    items = [(product["id"], 2)]

    first = await place_order(client, user["id"], items, **{"Idempotency-Key": "k-1"})
    second = await place_order(client, user["id"], items, **{"Idempotency-Key": "k-1"})

    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert await db.fetchval("SELECT stock FROM products") == 8


async def test_concurrent_duplicates_create_exactly_one_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=1000)

    responses = await asyncio.gather(
        *(
            place_order(client, user["id"], [(product["id"], 3)], **{"Idempotency-Key": "dup"})
            for _ in range(50)
        )
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert await db.fetchval("SELECT stock FROM products") == 997


async def test_same_key_with_a_different_body_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=10)
    await place_order(client, user["id"], [(product["id"], 1)], **{"Idempotency-Key": "k"})
    other = await place_order(client, user["id"], [(product["id"], 2)], **{"Idempotency-Key": "k"})
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_a_failed_attempt_does_not_burn_the_key(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=1)
    items = [(product["id"], 2)]
    failed = await place_order(client, user["id"], items, **{"Idempotency-Key": "retry-me"})
    assert failed.status_code == 409
    await client.patch(f"/products/{product['id']}", json={"stock": 5})
    retried = await place_order(client, user["id"], items, **{"Idempotency-Key": "retry-me"})
    assert retried.status_code == 201
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_without_a_key_every_request_is_a_new_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=10)
    for _ in range(2):
        assert (await place_order(client, user["id"], [(product["id"], 1)])).status_code == 201
    assert await db.fetchval("SELECT count(*) FROM orders") == 2


async def test_bad_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    product = await create_product(client)
    for key in ["", "k" * 256, "has space"]:
        response = await place_order(
            client, user["id"], [(product["id"], 1)], **{"Idempotency-Key": key}
        )
        assert response.status_code == 422, key


async def test_a_duplicate_waiting_for_its_key_holds_no_product_lock(
    client: httpx.AsyncClient, db: asyncpg.Connection, migrated_postgres: DatabaseEndpoint
) -> None:
    """The claim comes first and gates the rest: while a request waits for the
    transaction holding its key, orders of the same products go through."""
    user = await create_user(client)
    product = await create_product(client, stock=10)
    holder = await asyncpg.connect(migrated_postgres.dsn)
    holding = holder.transaction()
    await holding.start()
    try:
        await holder.execute(
            "INSERT INTO idempotency_keys (key, request_fingerprint) VALUES ('held', 'x')"
        )
        waiting = asyncio.create_task(
            place_order(client, user["id"], [(product["id"], 1)], **{"Idempotency-Key": "held"})
        )
        async with asyncio.timeout(10):
            while not await db.fetchval(  # noqa: ASYNC110 - the state is in Postgres
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ):
                await asyncio.sleep(0.02)
        async with asyncio.timeout(5):
            other = await place_order(client, user["id"], [(product["id"], 1)])
        assert other.status_code == 201
        assert not waiting.done()
    finally:
        await holding.rollback()  # the key is free again: the waiting request claims it
        await holder.close()
    assert (await waiting).status_code == 201
    assert await db.fetchval("SELECT stock FROM products") == 8
