from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.support.factories import create_user

PROBLEM = "application/problem+json"


async def test_create_and_get_user(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json={"email": "Ada@Example.com", "name": " Ada "})
    assert response.status_code == 201
    user = response.json()
    assert user["email"] == "ada@example.com"
    assert user["name"] == "Ada"

    fetched = await client.get(f"/users/{user['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == user


async def test_duplicate_email_is_409_whatever_the_case(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await create_user(client, "ada@example.com")
    response = await client.post("/users", json={"email": "ADA@example.com", "name": "Other"})
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/email-taken")
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_concurrent_sign_ups_with_one_email_give_one_user(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    responses = await asyncio.gather(
        *(client.post("/users", json={"email": "race@example.com", "name": "R"}) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_unknown_user_is_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/999999")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 404
    assert body["instance"] == "/users/999999"


@pytest.mark.parametrize(
    "path", ["/users/abc", "/users/0", "/users/-1", "/users/99999999999999999999999", "/users/1.5"]
)
async def test_bad_user_id_is_422(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "ada@example.com"},
        {"name": "Ada"},
        {"email": "not-an-email", "name": "Ada"},
        {"email": "ada@example.com", "name": ""},
        {"email": "ada@example.com", "name": "   "},
        {"email": "ada@example.com", "name": "x" * 201},
        {"email": "ada@example.com", "name": "nul\x00byte"},
        {"email": "ada@example.com", "name": 42},
        {"email": "ada@example.com", "name": "Ada", "admin": True},
        [],
        "ada",
        None,
    ],
)
async def test_bad_user_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: object
) -> None:
    response = await client.post("/users", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"]
    assert await db.fetchval("SELECT count(*) FROM users") == 0
