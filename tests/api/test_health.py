"""Liveness and readiness."""

from __future__ import annotations

import httpx

from tests.support.api import make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint

PROBLEM = "application/problem+json"


async def test_livez_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "cache": "ok"}}


async def test_readyz_is_503_when_dependencies_are_unreachable(
    migrated_postgres: DatabaseEndpoint, pgbouncer_server: DatabaseEndpoint
) -> None:
    nowhere = RedisEndpoint("127.0.0.1", 1, pgbouncer_server.process)
    dead_db = DatabaseEndpoint("127.0.0.1", 1, pgbouncer_server.process)
    settings = make_settings(migrated_postgres, dead_db, nowhere)
    async with running_api(settings) as api:
        response = await api.client.get("/readyz")
        assert (await api.client.get("/livez")).status_code == 200
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert set(response.json()["failed_checks"]) == {"database", "cache"}
