"""A database outage answers 503 problem+json with Retry-After, never a 500.

Two shapes of outage, as the api meets them: the pooler itself refuses connections (its
sidecar is gone), or the pooler is up but cannot log in to Postgres (Postgres is down:
PgBouncer answers the client with an error of SQLSTATE class 08).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devstack.servers import free_port
from tests.support.api import RunningApi, make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint, pgbouncer_in_front_of

PROBLEM = "application/problem+json"


@pytest.fixture(params=["pooler refuses", "postgres down"])
def unreachable_database(
    request: pytest.FixtureRequest, servers_dir: Path, pgbouncer_server: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    nothing_there = DatabaseEndpoint("127.0.0.1", free_port(), pgbouncer_server.process)
    if request.param == "pooler refuses":
        yield nothing_there
        return
    # Under the servers directory: PgBouncer runs as a user that must reach it.
    workdir = servers_dir / f"pgbouncer-{nothing_there.port}"
    with pgbouncer_in_front_of(nothing_there, workdir) as pooler:
        yield pooler


@pytest.fixture
async def api_without_database(
    migrated_postgres: DatabaseEndpoint,
    unreachable_database: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> AsyncIterator[RunningApi]:
    # While PgBouncer retries its login to Postgres it holds a new client until the
    # client's connect timeout: a short one keeps the test short.
    settings = make_settings(
        migrated_postgres, unreachable_database, cache_redis_server, connect_timeout_s=1
    )
    settings = settings.model_copy(
        update={"cache": settings.cache.model_copy(update={"enabled": False})}
    )
    async with running_api(settings) as api:
        yield api


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/users/1", None),
        ("GET", "/products?limit=5", None),
        ("POST", "/users", {"email": "outage@example.com", "name": "O"}),
        ("POST", "/orders", {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}),
    ],
)
async def test_requests_get_a_503_with_retry_after(
    api_without_database: RunningApi, method: str, path: str, body: dict[str, object] | None
) -> None:
    response = await api_without_database.client.request(method, path, json=body)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) >= 1
    problem = response.json()
    assert problem["type"].endswith("/database-unavailable")
    assert problem["status"] == 503
