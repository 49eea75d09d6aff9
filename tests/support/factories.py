"""Small helpers that create data through the public API."""

from __future__ import annotations

from typing import Any

import httpx


async def create_user(client: httpx.AsyncClient, email: str = "ada@example.com") -> dict[str, Any]:
    response = await client.post("/users", json={"email": email, "name": "Ada Lovelace"})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def create_product(
    client: httpx.AsyncClient,
    *,
    name: str = "Widget",
    category: str = "cat0",
    price_cents: int = 1250,
    stock: int = 10,
) -> dict[str, Any]:
    response = await client.post(
        "/products",
        json={"name": name, "category": category, "price_cents": price_cents, "stock": stock},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def place_order(
    client: httpx.AsyncClient, user_id: int, items: list[tuple[int, int]], **headers: str
) -> httpx.Response:
    return await client.post(
        "/orders",
        json={"user_id": user_id, "items": [{"product_id": p, "quantity": q} for p, q in items]},
        headers=headers,
    )
