"""API keys: who may call what, refusals as problems, the per-process key cache and its
invalidation across processes, batched ``last_used_at``, and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.core.api_keys import Scope
from services.core.settings import Settings
from tests.support.api import RunningApi, count_statements, running_api
from tests.support.api_processes import ApiProcess, api_env, api_processes
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint
from tests.support.factories import create_product, create_user, place_order
from tests.support.keys import bearer, make_key

PROBLEM = "application/problem+json"
REPO = Path(__file__).resolve().parents[2]

TEMPLATES = {
    ("POST", "/users"): ("/users", Scope.USERS_WRITE),
    ("GET", "/users/1"): ("/users/{user_id}", Scope.USERS_READ),
    ("GET", "/users/1/orders"): ("/users/{user_id}/orders", Scope.ORDERS_READ),
    ("POST", "/products"): ("/products", Scope.CATALOG_WRITE),
    ("PATCH", "/products/1"): ("/products/{product_id}", Scope.CATALOG_WRITE),
    ("POST", "/orders"): ("/orders", Scope.ORDERS_WRITE),
    ("GET", "/orders/1"): ("/orders/{order_id}", Scope.ORDERS_READ),
}
PRIVATE = [(method, path, scope) for (method, path), (_, scope) in TEMPLATES.items()]


async def _key(api: RunningApi, *scopes: Scope, **kw: object) -> str:
    return await make_key(api.resources.engine, scopes, **kw)


@pytest.mark.parametrize(("method", "path", "scope"), PRIVATE)
async def test_private_routes_need_a_key(
    client: httpx.AsyncClient, method: str, path: str, scope: Scope
) -> None:
    response = await client.request(method, path, json={}, headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == 'Bearer realm="stampede"'
    assert response.json()["type"] == "https://stampede.dev/problems/unauthenticated"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer nonsense",
        "Basic dXNlcjpwYXNz",
        "Bearer stk_0123456789ab_" + "A" * 43,  # well-formed, unknown
    ],
)
async def test_a_key_that_is_not_ours_is_401_invalid_token(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get("/users/1", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    if authorization.startswith("Bearer"):
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_known_prefix_with_the_wrong_secret_is_refused(
    api: RunningApi, client: httpx.AsyncClient
) -> None:
    token = await _key(api, Scope.ADMIN)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = await client.get("/users/1", headers=bearer(forged))
    assert response.status_code == 401
    assert (await client.get("/users/1", headers=bearer(token))).status_code == 404


async def test_catalogue_reads_are_public(client: httpx.AsyncClient) -> None:
    product = await create_product(client)
    for path in ["/products", f"/products/{product['id']}", "/livez", "/openapi.json"]:
        assert (await client.get(path, headers={"Authorization": ""})).status_code == 200


async def test_a_key_may_do_what_its_scopes_say(api: RunningApi, client: httpx.AsyncClient) -> None:
    catalog = bearer(await _key(api, Scope.CATALOG_WRITE))
    body = {"name": "Lamp", "category": "c", "price_cents": 1, "stock": 1}
    assert (await client.post("/products", json=body, headers=catalog)).status_code == 201
    refused = await client.post("/users", json={"email": "a@b.cd", "name": "A"}, headers=catalog)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["scope"] == "users:write"
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="stampede", error="insufficient_scope", scope="users:write"'
    )
    admin = bearer(await _key(api, Scope.ADMIN))
    user = await client.post("/users", json={"email": "a@b.cd", "name": "A"}, headers=admin)
    assert user.status_code == 201


async def test_a_cached_private_read_still_needs_its_key(
    api: RunningApi, client: httpx.AsyncClient
) -> None:
    user = await create_user(client)
    url = f"/users/{user['id']}"
    await client.get(url)
    assert (await client.get(url)).headers["x-cache"] == "hit"
    assert (await client.get(url, headers={"Authorization": ""})).status_code == 401
    orders_only = bearer(await _key(api, Scope.ORDERS_READ))
    assert (await client.get(url, headers=orders_only)).status_code == 403


async def test_an_expired_key_is_refused(api: RunningApi, client: httpx.AsyncClient) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    token = await _key(api, Scope.USERS_READ, expires_at=soon)
    assert (await client.get("/users/1", headers=bearer(token))).status_code == 404
    await asyncio.sleep(1.1)
    expired = await client.get("/users/1", headers=bearer(token))
    assert expired.status_code == 401
    assert expired.json()["detail"] == "The API key has expired."


async def test_only_an_hmac_of_the_token_is_stored(api: RunningApi, db: asyncpg.Connection) -> None:
    token = await _key(api, Scope.USERS_READ)
    prefix = token.split("_")[1]
    row = await db.fetchrow("SELECT * FROM api_keys WHERE prefix = $1", prefix)
    assert row is not None
    assert token.encode() not in b"".join(str(v).encode() for v in row.values())
    assert len(row["digest"]) == 32


async def test_the_openapi_document_declares_the_scheme_and_scopes(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for method, path, scope in PRIVATE:
        template = path.replace("/1", "/{user_id}" if "users" in path else "/{x}")
        operation = next(
            op
            for p, ops in spec["paths"].items()
            for m, op in ops.items()
            if m == method.lower()
            and p.split("/")[1] == template.split("/")[1]
            and p.count("/") == path.count("/")
        )
        assert operation["security"] == [{"ApiKey": [scope.value]}], (method, path)
        assert {"401", "403"} <= set(operation["responses"])
    assert "security" not in spec["paths"]["/products"]["get"]


@pytest.fixture
async def counted_api(settings: Settings) -> AsyncIterator[RunningApi]:
    quick = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"last_used_flush_s": 0.3})}
    )
    async with running_api(quick) as api:
        yield api


async def test_last_used_is_written_in_batches_not_per_request(
    counted_api: RunningApi, db: asyncpg.Connection, clean_database: None
) -> None:
    client = counted_api.client
    prefix = counted_api.token.split("_")[1]
    with count_statements(counted_api.resources) as statements:
        for _ in range(20):
            await client.get("/users/1")
        writes = [s for s in statements if "api_keys" in s]
    assert len(writes) <= 1  # a flush may fall inside the loop, once
    await asyncio.sleep(0.8)
    used = await db.fetchval("SELECT last_used_at FROM api_keys WHERE prefix = $1", prefix)
    assert used is not None
    assert datetime.now(UTC) - used < timedelta(seconds=5)


async def test_a_known_key_costs_no_query(api: RunningApi, client: httpx.AsyncClient) -> None:
    with count_statements(api.resources) as statements:
        for _ in range(10):
            await client.get("/products/999999")
            await client.get("/users/999999")
    assert not [s for s in statements if "api_keys" in s]


# Across real processes: the CLI revokes, both api processes refuse within a second.


@pytest.fixture
def two_apis(
    tmp_path: Path,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> Iterator[tuple[list[ApiProcess], dict[str, str]]]:
    env = api_env(migrated_postgres, pgbouncer_server, cache_redis_server)
    with api_processes(env, tmp_path) as apis:
        yield apis, env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.api.keys", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
async def test_the_cli_creates_lists_and_revokes_and_every_process_learns_within_1s(
    two_apis: tuple[list[ApiProcess], dict[str, str]], clean_database: None
) -> None:
    apis, env = two_apis
    created = _cli(env, "create", "--name", "cli test", "--scope", "users:read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    prefix = token.split("_")[1]
    listed = _cli(env, "list")
    assert prefix in listed.stdout
    assert token not in listed.stdout
    async with httpx.AsyncClient(headers=bearer(token), timeout=10) as http:
        for api in apis:  # every process has the key in its cache now
            assert (await http.get(api.url + "/users/1")).status_code == 404
        revoked = _cli(env, "revoke", prefix)
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        pending = set(range(len(apis)))
        while pending and time.monotonic() - started < 1.0:
            for index in list(pending):
                if (await http.get(apis[index].url + "/users/1")).status_code == 401:
                    pending.discard(index)
            await asyncio.sleep(0.02)
        assert not pending, f"processes still accepting a revoked key: {pending}"
    assert "revoked" in _cli(env, "list").stdout
    assert _cli(env, "revoke", prefix).returncode == 1  # already revoked


async def test_orders_need_orders_scopes(api: RunningApi, client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    product = await create_product(client)
    placed = await place_order(client, user["id"], [(product["id"], 1)])
    assert placed.status_code == 201
    reader = bearer(await _key(api, Scope.USERS_READ))
    assert (await client.get(f"/orders/{placed.json()['id']}", headers=reader)).status_code == 403
