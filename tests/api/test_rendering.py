"""The lean reads render their own bytes (services.api.rendering): the very bytes FastAPI
renders for the same schema, and the same bytes whether the cache answers or the route."""

from __future__ import annotations

import httpx

from tests.support.factories import create_product, create_user, place_order


def _page(items: list[bytes], next_cursor: bytes = b"null") -> bytes:
    return b'{"items":[' + b",".join(items) + b'],"next_cursor":' + next_cursor + b"}"


async def test_reads_render_what_fastapi_renders_for_the_same_schema(
    client: httpx.AsyncClient,
) -> None:
    # The writes and GET /orders/{id} still return models through FastAPI's serialization.
    user = await client.post("/users", json={"email": "ada@example.com", "name": "Ada ☃"})
    products = [
        await client.post(
            "/products",
            json={"name": f"Lämp {i}", "category": "lamps", "price_cents": 999, "stock": 5},
        )
        for i in range(2)
    ]
    user_id = user.json()["id"]
    product_ids = [product.json()["id"] for product in products]

    assert (await client.get(f"/users/{user_id}")).content == user.content
    for product_id, product in zip(product_ids, products, strict=True):
        assert (await client.get(f"/products/{product_id}")).content == product.content
    listed = await client.get("/products", params={"category": "lamps"})
    assert listed.headers["content-type"] == "application/json"
    assert listed.content == _page([product.content for product in products])

    placed = [
        await place_order(client, user_id, [(product_ids[0], 1), (product_ids[1], quantity)])
        for quantity in (1, 2)
    ]
    orders = [(await client.get(f"/orders/{order.json()['id']}")).content for order in placed]
    assert (await client.get(f"/users/{user_id}/orders")).content == _page(orders[::-1])


async def test_a_cached_read_is_byte_for_byte_the_uncached_one(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    product = await create_product(client)
    await place_order(client, user["id"], [(product["id"], 1)])
    for url in [f"/users/{user['id']}", f"/users/{user['id']}/orders", "/products"]:
        miss = await client.get(url)
        hit = await client.get(url)
        assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("miss", "hit"), url
        assert hit.content == miss.content, url
        assert hit.headers["etag"] == miss.headers["etag"], url
        assert hit.headers["content-type"] == miss.headers["content-type"] == "application/json"
        assert (
            hit.headers["content-length"]
            == miss.headers["content-length"]
            == str(len(miss.content))
        )
