from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import pytest

from tests.support.api import RunningApi, count_statements
from tests.support.factories import create_product, create_user, place_order

PROBLEM = "application/problem+json"


async def counts(db: asyncpg.Connection) -> tuple[int, int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),"
        " (SELECT count(*) FROM idempotency_keys)"
    )
    assert row is not None
    return row[0], row[1], row[2]


async def stock(db: asyncpg.Connection, product_id: int) -> int:
    value = await db.fetchval("SELECT stock FROM products WHERE id = $1", product_id)
    assert isinstance(value, int)
    return value


async def test_order_decrements_stock_and_records_prices(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    lamp = await create_product(client, price_cents=1000, stock=5)
    bulb = await create_product(client, price_cents=250, stock=10)

    response = await place_order(client, user["id"], [(lamp["id"], 2), (bulb["id"], 4)])

    assert response.status_code == 201, response.text
    order = response.json()
    assert order["user_id"] == user["id"]
    assert order["status"] == "placed"
    assert order["confirmation_status"] == "pending"
    assert order["total_cents"] == 2 * 1000 + 4 * 250
    assert [(i["product_id"], i["quantity"], i["unit_price_cents"]) for i in order["items"]] == [
        (lamp["id"], 2, 1000),
        (bulb["id"], 4, 250),
    ]
    assert await stock(db, lamp["id"]) == 3
    assert await stock(db, bulb["id"]) == 6
    assert (await client.get(f"/orders/{order['id']}")).json() == order


async def test_later_price_change_does_not_rewrite_the_order(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    lamp = await create_product(client, price_cents=1000)
    order = (await place_order(client, user["id"], [(lamp["id"], 1)])).json()
    await client.patch(f"/products/{lamp['id']}", json={"price_cents": 5000})
    again = (await client.get(f"/orders/{order['id']}")).json()
    assert again["items"][0]["unit_price_cents"] == 1000
    assert again["total_cents"] == 1000


async def test_insufficient_stock_is_409_and_all_or_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    plenty = await create_product(client, stock=100)
    scarce = await create_product(client, stock=1)

    response = await place_order(client, user["id"], [(plenty["id"], 5), (scarce["id"], 2)])

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["product_ids"] == [scarce["id"]]
    assert await stock(db, plenty["id"]) == 100
    assert await stock(db, scarce["id"]) == 1
    assert await counts(db) == (0, 0, 0)


async def test_repeated_product_lines_count_together_against_stock(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=3)
    response = await place_order(client, user["id"], [(product["id"], 2), (product["id"], 2)])
    assert response.status_code == 409
    assert await stock(db, product["id"]) == 3


async def test_concurrent_orders_never_oversell(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    a = await create_product(client, stock=10)
    b = await create_product(client, stock=10)
    # Half the orders list the products in the opposite order: no deadlock either way.
    responses = await asyncio.gather(
        *(
            place_order(client, user["id"], [(a["id"], 1), (b["id"], 1)][:: 1 if i % 2 else -1])
            for i in range(30)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [409] * 20
    assert await stock(db, a["id"]) == 0
    assert await stock(db, b["id"]) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": 1},
        {"items": [{"product_id": 1, "quantity": 1}]},
        {"user_id": 1, "items": []},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 0}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": -3}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 1001}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": "two"}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 1.5}]},
        {"user_id": 1, "items": [{"product_id": 1}]},
        {"user_id": 1, "items": [{"product_id": 0, "quantity": 1}]},
        {"user_id": 1, "items": [{"product_id": 2**63, "quantity": 1}]},
        {"user_id": "one", "items": [{"product_id": 1, "quantity": 1}]},
        {"user_id": 2**64, "items": [{"product_id": 1, "quantity": 1}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}] * 51},
        {"user_id": 1, "items": {"product_id": 1, "quantity": 1}},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 1, "price_cents": 0}]},
        [],
    ],
)
async def test_bad_order_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: object
) -> None:
    await create_user(client)
    product = await create_product(client, stock=5)
    response = await client.post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert await counts(db) == (0, 0, 0)
    assert await stock(db, product["id"]) == 5


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"user_id": 1,}', b"\xff\xfe", b""])
async def test_malformed_json_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection, raw: bytes
) -> None:
    response = await client.post(
        "/orders", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert await counts(db) == (0, 0, 0)


async def test_unknown_user_or_product_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=5)

    no_user = await place_order(client, 4242, [(product["id"], 1)])
    assert no_user.status_code == 422
    assert no_user.json()["type"].endswith("/unknown-reference")

    no_product = await place_order(client, user["id"], [(product["id"], 1), (777, 1)])
    assert no_product.status_code == 422
    assert no_product.json()["product_ids"] == [777]
    assert await counts(db) == (0, 0, 0)
    assert await stock(db, product["id"]) == 5


async def test_oversized_body_is_413_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    padding = "x" * (70 * 1024)
    body = json.dumps({"user_id": user["id"], "items": [], "padding": padding}).encode()
    response = await client.post(
        "/orders", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM

    async def chunks():  # no Content-Length: the limit must hold while streaming too
        for _ in range(100):
            yield b"x" * 1024

    streamed = await client.post(
        "/orders", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == PROBLEM
    assert await counts(db) == (0, 0, 0)


async def test_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders/31337")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_user_orders_are_newest_first_and_paginate(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=100)
    ids = [
        (await place_order(client, user["id"], [(product["id"], 1)])).json()["id"] for _ in range(5)
    ]
    first = (await client.get(f"/users/{user['id']}/orders", params={"limit": 3})).json()
    assert [o["id"] for o in first["items"]] == ids[::-1][:3]
    rest = (
        await client.get(
            f"/users/{user['id']}/orders", params={"limit": 3, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [o["id"] for o in rest["items"]] == ids[::-1][3:]
    assert rest["next_cursor"] is None
    assert all(o["items"] for o in first["items"] + rest["items"])


async def test_orders_of_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/users/5555/orders")).status_code == 404


async def test_user_orders_statement_count_does_not_grow_with_orders(
    api: RunningApi, client: httpx.AsyncClient
) -> None:
    """The N+1 proof: one order or forty, each with items, the same number of queries."""
    product_a = await create_product(client, stock=1000)
    product_b = await create_product(client, stock=1000)
    few = await create_user(client, "few@example.com")
    many = await create_user(client, "many@example.com")
    await place_order(client, few["id"], [(product_a["id"], 1), (product_b["id"], 1)])
    for _ in range(40):
        await place_order(client, many["id"], [(product_a["id"], 1), (product_b["id"], 2)])

    with count_statements(api.resources) as for_one:
        one = (await client.get(f"/users/{few['id']}/orders", params={"limit": 100})).json()
    with count_statements(api.resources) as for_forty:
        forty = (await client.get(f"/users/{many['id']}/orders", params={"limit": 100})).json()

    assert len(one["items"]) == 1
    assert len(forty["items"]) == 40
    assert sum(len(o["items"]) for o in forty["items"]) == 80
    assert len(for_one) == len(for_forty) == 1, for_forty


async def test_an_order_is_one_statement_and_a_keyed_one_two(
    api: RunningApi, client: httpx.AsyncClient
) -> None:
    """The claim, the stock check-and-decrement, the order, its items and its outbox row
    are one statement; a key adds the recording of the answer; a replay is the claim
    that finds the key taken and the read of the stored answer."""
    user = await create_user(client)
    lamp = await create_product(client, stock=10)
    bulb = await create_product(client, stock=10)
    lines = [(lamp["id"], 1), (bulb["id"], 2), (lamp["id"], 1)]

    with count_statements(api.resources) as plain:
        assert (await place_order(client, user["id"], lines)).status_code == 201
    with count_statements(api.resources) as keyed:
        first = await place_order(client, user["id"], lines, **{"Idempotency-Key": "once"})
    with count_statements(api.resources) as replayed:
        again = await place_order(client, user["id"], lines, **{"Idempotency-Key": "once"})

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert len(plain) == 1, plain
    assert len(keyed) == 2, keyed
    assert len(replayed) == 2, replayed


async def test_refused_orders_leave_no_outbox_row_and_no_stock_change(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    plenty = await create_product(client, stock=100)
    scarce = await create_product(client, stock=1)
    before = await db.fetch("SELECT id, stock, updated_at FROM products ORDER BY id")

    refused = [
        await place_order(client, user["id"], [(plenty["id"], 5), (scarce["id"], 2)]),
        await place_order(client, 4242, [(plenty["id"], 5)]),
        await place_order(client, user["id"], [(plenty["id"], 5), (999, 1)]),
    ]

    assert [r.status_code for r in refused] == [409, 422, 422]
    assert await db.fetch("SELECT id, stock, updated_at FROM products ORDER BY id") == before
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    assert await counts(db) == (0, 0, 0)


async def test_an_order_writes_its_outbox_row_and_items_in_line_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    user = await create_user(client)
    a = await create_product(client, price_cents=300, stock=10)
    b = await create_product(client, price_cents=200, stock=10)
    lines = [(b["id"], 1), (a["id"], 2), (b["id"], 3)]

    order = (await place_order(client, user["id"], lines)).json()

    assert [(i["product_id"], i["quantity"]) for i in order["items"]] == lines
    assert order["total_cents"] == 1 * 200 + 2 * 300 + 3 * 200
    stored = await db.fetch(
        "SELECT product_id, quantity, unit_price_cents FROM order_items ORDER BY id"
    )
    assert [tuple(row) for row in stored] == [
        (p, q, 200 if p == b["id"] else 300) for p, q in lines
    ]
    outbox = await db.fetch("SELECT task, payload FROM outbox")
    assert [(row["task"], json.loads(row["payload"])) for row in outbox] == [
        ("stampede.orders.send_confirmation", {"order_id": order["id"]})
    ]
    assert await stock(db, a["id"]) == 8
    assert await stock(db, b["id"]) == 6
