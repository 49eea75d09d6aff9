"""Liveness and readiness: a pod is unready only when its own path to the database is
gone, never because a dependency every pod shares is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.servers import free_port
from tests.support.api import make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint, pgbouncer_in_front_of

PROBLEM = "application/problem+json"


@pytest.fixture
def pgbouncer_without_postgres(
    servers_dir: Path, pgbouncer_server: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    """A pooler that is up while the Postgres behind it is not (nothing on its port)."""
    postgres_down = DatabaseEndpoint("127.0.0.1", free_port(), pgbouncer_server.process)
    # Under the servers directory: PgBouncer runs as a user that must reach it.
    workdir = servers_dir / f"pgbouncer-{postgres_down.port}"
    with pgbouncer_in_front_of(postgres_down, workdir) as pooler:
        yield pooler


async def test_livez_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"pooler": "ok"}}


async def test_unready_when_its_own_pooler_is_unreachable(
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> None:
    no_pooler = DatabaseEndpoint("127.0.0.1", free_port(), pgbouncer_server.process)
    settings = make_settings(migrated_postgres, no_pooler, cache_redis_server)
    async with running_api(settings) as api:
        response = await api.client.get("/readyz")
        assert (await api.client.get("/livez")).status_code == 200
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["failed_checks"] == {"pooler": "ConnectionRefusedError"}


async def test_ready_while_shared_dependencies_are_down(
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_without_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
) -> None:
    """Postgres and the cache Redis down: every pod would be equally affected; they stay
    in the Service and answer what they can (cached reads, 503s with Retry-After)."""
    no_redis = RedisEndpoint("127.0.0.1", free_port(), pgbouncer_server.process)
    settings = make_settings(migrated_postgres, pgbouncer_without_postgres, no_redis)
    async with running_api(settings) as api:
        response = await api.client.get("/readyz")
    assert response.status_code == 200
