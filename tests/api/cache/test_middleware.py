"""The response cache in one process: headers, 304, compression, invalidation on writes,
single-flight. Cross-process guarantees are in test_cache_processes.py."""

from __future__ import annotations

import asyncio

import httpx
import redis.asyncio as redis

from services.api.resources import Resources
from tests.support.api import RunningApi, count_statements
from tests.support.factories import create_product, create_user, place_order


async def test_miss_then_hit_with_honest_headers(client: httpx.AsyncClient) -> None:
    product = await create_product(client)
    url = f"/products/{product['id']}"

    first = await client.get(url)
    assert first.status_code == 200
    assert first.headers["x-cache"] == "miss"
    assert first.headers["cache-control"] == "public, max-age=60"
    assert first.headers["age"] == "0"
    etag = first.headers["etag"]

    second = await client.get(url)
    assert second.headers["x-cache"] == "hit"
    assert second.json() == first.json() == product
    assert second.headers["etag"] == etag
    assert second.headers["content-type"] == "application/json"
    assert "Accept-Encoding" in second.headers["vary"]

    not_modified = await client.get(url, headers={"If-None-Match": f'W/"x", {etag}'})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200


async def test_users_are_cached_privately(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    await client.get(f"/users/{user['id']}")
    response = await client.get(f"/users/{user['id']}")
    assert response.headers["x-cache"] == "hit"
    assert response.headers["cache-control"].startswith("private, max-age=")


async def test_large_bodies_are_gzipped_for_clients_that_accept_it(
    client: httpx.AsyncClient, cache_redis: redis.Redis
) -> None:
    for i in range(20):
        await create_product(client, name=f"A rather long product name {i}", category="big")
    plain = await client.get(
        "/products", params={"category": "big"}, headers={"Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers
    assert len(plain.content) > 1024

    zipped = await client.get(
        "/products", params={"category": "big"}, headers={"Accept-Encoding": "br, gzip"}
    )
    assert zipped.headers["x-cache"] == "hit"
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 2
    assert zipped.json() == plain.json()  # httpx decoded it
    assert zipped.headers["etag"] != plain.headers["etag"]

    refused = await client.get(
        "/products", params={"category": "big"}, headers={"Accept-Encoding": "gzip;q=0"}
    )
    assert "content-encoding" not in refused.headers

    # Compressed once, when stored: the entry holds both representations.
    (key,) = [k async for k in cache_redis.scan_iter(match="*:e:/products:*")]
    assert await cache_redis.hget(key, "gz")


async def test_patch_invalidates_the_product_and_the_lists(client: httpx.AsyncClient) -> None:
    product = await create_product(client, category="cat3", price_cents=100)
    other = await create_product(client, category="cat4")
    urls = [f"/products/{product['id']}", "/products?category=cat3", "/products"]
    for url in [*urls, f"/products/{other['id']}"]:
        await client.get(url)
        assert (await client.get(url)).headers["x-cache"] == "hit"

    patched = await client.patch(f"/products/{product['id']}", json={"price_cents": 200})
    assert patched.status_code == 200

    detail = await client.get(urls[0])
    assert detail.headers["x-cache"] == "miss"
    assert detail.json()["price_cents"] == 200
    for url in urls[1:]:
        page = await client.get(url)
        assert page.headers["x-cache"] == "miss", url
        assert {
            item["price_cents"] for item in page.json()["items"] if item["id"] == product["id"]
        } == {200}
    assert (await client.get(f"/products/{other['id']}")).headers["x-cache"] == "hit"


async def test_a_new_order_invalidates_the_users_orders_and_the_touched_products(
    client: httpx.AsyncClient,
) -> None:
    user = await create_user(client)
    bought = await create_product(client, category="cat1", stock=5)
    untouched = await create_product(client, category="cat2", stock=5)
    touched_urls = [
        f"/users/{user['id']}/orders",
        f"/products/{bought['id']}",
        "/products?category=cat1",
    ]
    kept_urls = [f"/products/{untouched['id']}", "/products?category=cat2", f"/users/{user['id']}"]
    for url in touched_urls + kept_urls:
        await client.get(url)

    assert (await place_order(client, user["id"], [(bought["id"], 2)])).status_code == 201

    for url in touched_urls:
        assert (await client.get(url)).headers["x-cache"] == "miss", url
    for url in kept_urls:
        assert (await client.get(url)).headers["x-cache"] == "hit", url
    assert (await client.get(f"/products/{bought['id']}")).json()["stock"] == 3
    orders = (await client.get(f"/users/{user['id']}/orders")).json()["items"]
    assert len(orders) == 1


async def test_a_failed_write_invalidates_nothing(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    product = await create_product(client, stock=1)
    await client.get(f"/products/{product['id']}")
    response = await place_order(client, user["id"], [(product["id"], 5)])
    assert response.status_code == 409
    assert (await client.get(f"/products/{product['id']}")).headers["x-cache"] == "hit"


async def test_unlisted_query_parameters_do_not_split_or_bust_the_cache(
    client: httpx.AsyncClient,
) -> None:
    await create_product(client, category="cat5")
    await client.get("/products?category=cat5&limit=5")
    for url in ["/products?limit=5&category=cat5", "/products?category=cat5&limit=5&_=12345"]:
        assert (await client.get(url)).headers["x-cache"] == "hit", url


async def test_path_ids_are_canonical_so_invalidation_reaches_every_spelling(
    client: httpx.AsyncClient,
) -> None:
    product = await create_product(client, stock=1)
    padded = f"/products/00{product['id']}"
    assert (await client.get(padded)).status_code == 200
    assert (await client.get(f"/products/{product['id']}")).headers["x-cache"] == "hit"
    await client.patch(f"/products/{product['id']}", json={"stock": 9})
    again = await client.get(padded)
    assert again.headers["x-cache"] == "miss"
    assert again.json()["stock"] == 9
    assert (await client.get("/products/4x2")).status_code == 422


async def test_negative_results_are_not_cached(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        response = await client.get("/products/424242")
        assert response.status_code == 404
        assert response.headers["x-cache"] == "miss"
        assert response.headers["content-type"] == "application/problem+json"


async def test_concurrent_requests_for_a_cold_key_run_the_query_once(
    client: httpx.AsyncClient, api: RunningApi
) -> None:
    await create_product(client, category="hot")
    misses_before = _metrics(api.resources).get(("miss", "/products"), 0)
    with count_statements(api.resources) as statements:
        responses = await asyncio.gather(
            *(client.get("/products", params={"category": "hot"}) for _ in range(200))
        )
    assert {r.status_code for r in responses} == {200}
    states = [r.headers["x-cache"] for r in responses]
    assert states.count("miss") == 1
    assert [s for s in statements if "FROM products" in s] == [statements[0]]
    assert len(statements) == 1, statements
    assert _metrics(api.resources)["miss", "/products"] == misses_before + 1


def _metrics(resources: Resources) -> dict[tuple[str, ...], int]:
    return dict(resources.cache_metrics.counts)


async def test_uncached_responses_are_compressed_and_cached_ones_stored_plain(
    client: httpx.AsyncClient,
) -> None:
    spec = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert spec.headers["content-encoding"] == "gzip"
    assert spec.json()["openapi"]
    for i in range(40):
        await create_product(client, name=f"Lamp {i:02d} " + "x" * 40, category="bulk")
    # A miss computed for a gzip-accepting client is stored as identity bytes plus the
    # cache's own gzip copy: both kinds of client get a correct body afterwards.
    first = await client.get(
        "/products", params={"category": "bulk"}, headers={"Accept-Encoding": "gzip"}
    )
    assert first.headers["content-encoding"] == "gzip"
    plain = await client.get(
        "/products", params={"category": "bulk"}, headers={"Accept-Encoding": "identity"}
    )
    assert plain.headers["x-cache"] == "hit"
    assert "content-encoding" not in plain.headers
    assert plain.json() == first.json()
    assert len(plain.json()["items"]) == 20
