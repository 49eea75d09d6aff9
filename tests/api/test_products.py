from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.support.factories import create_product

PROBLEM = "application/problem+json"


async def test_create_get_and_patch_product(client: httpx.AsyncClient) -> None:
    product = await create_product(client, name="Lamp", category="cat3", price_cents=999, stock=4)
    assert product["name"] == "Lamp"

    fetched = await client.get(f"/products/{product['id']}")
    assert fetched.json() == product

    patched = await client.patch(f"/products/{product['id']}", json={"price_cents": 1099})
    assert patched.status_code == 200
    body = patched.json()
    assert body["price_cents"] == 1099
    assert body["name"] == "Lamp"  # untouched fields stay
    assert body["updated_at"] >= product["updated_at"]


async def test_keyset_pagination_walks_every_product_once(client: httpx.AsyncClient) -> None:
    for i in range(25):
        await create_product(client, name=f"p{i}", category=f"cat{i % 3}")
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"category": "cat1", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/products", params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        assert all(item["category"] == "cat1" for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 8


async def test_list_without_category_and_empty_category(client: httpx.AsyncClient) -> None:
    await create_product(client, category="cat0")
    assert len((await client.get("/products")).json()["items"]) == 1
    empty = (await client.get("/products", params={"category": "nope"})).json()
    assert empty == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": -5},
        {"limit": 101},
        {"limit": 10**12},
        {"limit": "ten"},
        {"cursor": "x" * 65},
        {"category": "c" * 65},
    ],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, object]
) -> None:
    response = await client.get("/products", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


# Cursors have a documented pattern: one that breaks it is refused like any bad parameter.
@pytest.mark.parametrize(
    "cursor", ["garbage", "!!!", "azE6LTE", "azE6YWJj", "eDox", "Zm9v", "k2_", "k2_-1", "k2_0"]
)
async def test_bad_cursor_is_422(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get("/products", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "category": "c", "price_cents": -1, "stock": 1},
        {"name": "x", "category": "c", "price_cents": 1, "stock": -1},
        {"name": "x", "category": "c", "price_cents": 2**31, "stock": 1},
        {"name": "x", "category": "c", "price_cents": "cheap", "stock": 1},
        {"name": "x", "category": "c", "price_cents": 1.5, "stock": 1},
        {"name": "x", "category": "", "price_cents": 1, "stock": 1},
        {"category": "c", "price_cents": 1, "stock": 1},
    ],
)
async def test_bad_product_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, object]
) -> None:
    response = await client.post("/products", json=body)
    assert response.status_code == 422, response.text
    assert await db.fetchval("SELECT count(*) FROM products") == 0


@pytest.mark.parametrize(
    "body", [{}, {"stock": -1}, {"price_cents": None}, {"name": None}, {"colour": "red"}]
)
async def test_bad_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    product = await create_product(client)
    response = await client.patch(f"/products/{product['id']}", json=body)
    assert response.status_code == 422, response.text
    assert (await client.get(f"/products/{product['id']}")).json() == product


async def test_patch_unknown_product_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/products/424242", json={"stock": 1})
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
