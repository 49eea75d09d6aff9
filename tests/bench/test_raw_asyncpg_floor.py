"""The raw-asyncpg floor sends exactly the api's SQL, and answers what the api answers.

The floor compiles the api's own statement objects; the first tests prove that is all
the api sends, in order (another statement would fail them and print the api's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from bench.floors.raw_asyncpg import RawAsyncpgFloor
from bench.floors.sql import ORDER_WRITE, POINT_READ, USER_ORDERS
from tests.support.api import RunningApi, count_statements
from tests.support.endpoints import DatabaseEndpoint
from tests.support.factories import create_product, create_user, place_order


@pytest.fixture
async def floor(pgbouncer_server: DatabaseEndpoint) -> AsyncIterator[httpx.AsyncClient]:
    """The floor app in-process, through the PgBouncer the api uses."""
    app = RawAsyncpgFloor()
    app.pool = await asyncpg.create_pool(pgbouncer_server.dsn, min_size=1, max_size=2)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://floor") as client:
            yield client
    finally:
        await app.pool.close()


async def test_the_order_write_is_the_apis(api: RunningApi, client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    lamp = await create_product(client, stock=5)
    mug = await create_product(client, name="Mug", stock=5)
    with count_statements(api.resources) as sent:
        response = await place_order(
            client, user["id"], [(mug["id"], 1), (lamp["id"], 2)], **{"Idempotency-Key": "k-1"}
        )
    assert response.status_code == 201
    assert sent == ORDER_WRITE


async def test_the_reads_are_the_apis(api: RunningApi, client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    with count_statements(api.resources) as point_read:
        assert (await client.get(f"/users/{user['id']}")).status_code == 200
    with count_statements(api.resources) as orders_read:
        assert (await client.get(f"/users/{user['id']}/orders")).status_code == 200
    assert point_read == [POINT_READ.text]
    assert orders_read == [USER_ORDERS.text]


async def test_the_floor_answers_as_the_api_does(
    client: httpx.AsyncClient, floor: httpx.AsyncClient
) -> None:
    user = await create_user(client)
    lamp = await create_product(client, price_cents=700, stock=5)
    mug = await create_product(client, name="Mug", price_cents=300, stock=5)
    body = {
        "user_id": user["id"],
        "items": [
            {"product_id": mug["id"], "quantity": 1},
            {"product_id": lamp["id"], "quantity": 2},
        ],
    }
    placed = await floor.post("/orders", json=body, headers={"Idempotency-Key": "floor-1"})
    assert placed.status_code == 201
    order = placed.json()
    assert order["total_cents"] == 1700
    assert (await client.get(f"/orders/{order['id']}")).json() == order
    assert (await client.get(f"/products/{lamp['id']}")).json()["stock"] == 3
    again = await floor.post("/orders", json=body, headers={"Idempotency-Key": "floor-1"})
    assert again.status_code == 409  # the floor does not replay; unique keys only

    for path in (f"/users/{user['id']}", f"/users/{user['id']}/orders"):
        from_floor = await floor.get(path)
        assert from_floor.status_code == 200
        assert from_floor.json() == (await client.get(path)).json()
    assert (await floor.get("/users/999999")).status_code == 404
    assert (await floor.get("/users/999999/orders")).status_code == 404
