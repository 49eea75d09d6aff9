"""Health, request ids, problem rendering and the OpenAPI contract."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import make_settings, running_api
from tests.conftest import DatabaseEndpoint, RedisEndpoint

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


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/livez", headers={"X-Request-ID": "bad id\twith junk"})
    assert generated.headers["x-request-id"] != "bad id\twith junk"
    assert len(generated.headers["x-request-id"]) == 32


async def test_problem_carries_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/77", headers={"X-Request-ID": "trace-77"})
    assert response.json()["request_id"] == "trace-77"


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nope", 404), ("DELETE", "/users/1", 405)]
)
async def test_framework_errors_are_problems(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == status


async def test_openapi_documents_models_and_problems(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "Problem" in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok = [code for code in operation["responses"] if code.startswith("2")]
            assert ok, (method, path)
            assert operation["responses"][ok[0]]["content"]["application/json"]["schema"], (
                method,
                path,
            )
            errors = [code for code in operation["responses"] if code[0] in "45"]
            assert errors, (method, path)
            for code in errors:
                content = operation["responses"][code]["content"]
                assert PROBLEM in content, (method, path, code)
    assert (await client.get("/docs")).status_code == 200
