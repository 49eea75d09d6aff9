"""Strict input: JSON types, malformed bodies, media types, request limits, 405's
``Allow`` and HEAD. In-process against the real app, and over HTTP against a real
uvicorn process (what the server itself does with HEAD and large headers matters)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.api_processes import ApiProcess, api_env, api_process
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint
from tests.support.factories import create_product, create_user

PROBLEM = "application/problem+json"
JSON_HEADERS = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "category": "c", "price_cents": True, "stock": 1},
        {"name": "x", "category": "c", "price_cents": "100", "stock": 1},
        {"name": "x", "category": "c", "price_cents": 100, "stock": "5"},
        {"name": "x", "category": "c", "price_cents": 100.0, "stock": 1},
        {"name": 1, "category": "c", "price_cents": 100, "stock": 1},
    ],
)
async def test_lax_types_are_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, object]
) -> None:
    response = await client.post("/products", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert await db.fetchval("SELECT count(*) FROM products") == 0


@pytest.mark.parametrize(
    "item",
    [
        {"product_id": 1, "quantity": True},
        {"product_id": 1, "quantity": "1"},
        {"product_id": 1.0, "quantity": 1},
        {"product_id": "1", "quantity": 1},
    ],
)
async def test_lax_order_types_are_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection, item: dict[str, object]
) -> None:
    user = await create_user(client)
    await create_product(client)
    response = await client.post("/orders", json={"user_id": user["id"], "items": [item]})
    assert response.status_code == 422, response.text
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
    as_string = await client.post("/orders", json={"user_id": str(user["id"]), "items": [item]})
    assert as_string.status_code == 422


async def test_lax_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    product = await create_product(client)
    response = await client.patch(f"/products/{product['id']}", json={"price_cents": True})
    assert response.status_code == 422
    assert (await client.get(f"/products/{product['id']}")).json() == product


USER = {"email": "ada@example.com", "name": "Ada"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "ada@example.com", "name": "Ad\xe9"}',  # latin-1, not UTF-8
        b"\xff\xfe\x00",
        json.dumps(USER).encode("utf-16"),
        json.dumps(USER).encode("utf-32"),
        b"\xef\xbb\xbf" + json.dumps(USER).encode(),  # a byte order mark
        b"[" * 5000 + b"]" * 5000,
        b'{"email": "ada@example.com", "name": "Ada", "x": ' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"email": "ada@example.com", "name": NaN}',
        b'{"email": "ada@example.com", "name": Infinity}',
        b'{"email": "ada@example.com", "name": "Ada"',
    ],
)
async def test_malformed_json_is_a_422_problem_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: bytes
) -> None:
    response = await client.post("/users", content=body, headers=JSON_HEADERS)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://stampede.dev/problems/validation-error"
    assert problem["errors"][0]["type"] == "json_invalid"
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_nesting_within_the_limit_is_only_a_schema_error(client: httpx.AsyncClient) -> None:
    body = {**USER, "x": [[[[1]]]]}
    response = await client.post("/users", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/xml",
    ],
)
async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient, db: asyncpg.Connection, content_type: str | None
) -> None:
    request = client.build_request("POST", "/users", content=json.dumps(USER).encode())
    request.headers.pop("content-type", None)
    if content_type is not None:
        request.headers["content-type"] = content_type
    response = await client.send(request)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "https://stampede.dev/problems/unsupported-media-type"
    assert await db.fetchval("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize("content_type", ["application/json; charset=UTF-8", "application/json"])
async def test_json_with_utf8_is_accepted(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/users",
        content=json.dumps({"email": "zoe@example.com", "name": "Zoë"}).encode(),
        headers={"content-type": content_type},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Zoë"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/products", "GET, HEAD, POST"),
        ("/products/1", "GET, HEAD, PATCH"),
        ("/users", "POST"),
        ("/users/1", "GET, HEAD"),
        ("/orders/1", "GET, HEAD"),
    ],
)
async def test_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await client.request("DELETE", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == PROBLEM


async def test_email_and_names_the_schema_describes_are_what_is_accepted(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert "pattern" in spec["UserCreate"]["properties"]["email"]
    assert "pattern" in spec["UserCreate"]["properties"]["name"]
    update = spec["ProductUpdate"]
    assert update["minProperties"] == 1
    assert update["properties"]["stock"]["type"] == "integer"  # null is refused
    for bad in ["ada@localhost", "ada@example.c0m", "ada@-example.com", "a b@example.com"]:
        response = await client.post("/users", json={"email": bad, "name": "Ada"})
        assert response.status_code == 422, bad
    trimmed = await client.post("/users", json={"email": "Ada@Example.COM", "name": " Ada\n"})
    assert trimmed.json()["email"] == "ada@example.com"
    assert trimmed.json()["name"] == "Ada"


async def test_cursor_pattern_is_documented_and_enforced(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/products"]["get"]["parameters"]}
    assert params["cursor"]["schema"]["anyOf"][0]["pattern"]
    for cursor in ["k2_0", "k2_8000000000000000", "k2_01", "k2_A", "azE6MjQ"]:
        response = await client.get("/products", params={"cursor": cursor})
        assert response.status_code == 422, cursor
    response = await client.get("/products", params={"cursor": "k2_7fffffffffffffff"})
    assert response.status_code == 200


@pytest.fixture(scope="module")
def http_api(
    tmp_path_factory: pytest.TempPathFactory,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> Iterator[ApiProcess]:
    env = api_env(migrated_postgres, pgbouncer_server, cache_redis_server)
    log = tmp_path_factory.mktemp("strict-input") / "api.log"
    with api_process(env, Path(log), hash_seed="1") as api:
        yield api


async def test_head_answers_like_get_without_a_body(
    http_api: ApiProcess, clean_database: None, clean_cache: None
) -> None:
    async with httpx.AsyncClient(base_url=http_api.url) as client:
        for path in ["/products?limit=1", "/livez", "/openapi.json"]:
            get = await client.get(path)
            head = await client.head(path)
            assert head.status_code == get.status_code == 200, path
            assert head.content == b""
            assert head.headers["content-type"] == get.headers["content-type"]
        missing = await client.head("/products/999999")
        assert missing.status_code == 404
        assert missing.content == b""
        assert (await client.head("/users")).status_code == 405


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-big": "a" * 100_000}, 431),
        ({"x-big": "a" * 1_000_000}, 431),
        ({f"x-h{i}": "1" for i in range(150)}, 431),
        ({"x-fine": "a" * 4000}, 200),
    ],
)
async def test_header_limits(http_api: ApiProcess, headers: dict[str, str], status: int) -> None:
    async with httpx.AsyncClient(base_url=http_api.url) as client:
        response = await client.get("/livez", headers=headers)
    assert response.status_code == status
    if status != 200:
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == status


async def test_url_length_limit(http_api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=http_api.url) as client:
        too_long = await client.get("/products", params={"x": "a" * 9000})
        fine = await client.get("/livez", params={"x": "a" * 4000})
    assert too_long.status_code == 414
    assert too_long.headers["content-type"] == PROBLEM
    assert fine.status_code == 200
