"""Every error is an RFC 9457 problem, framework errors included."""

from __future__ import annotations

import httpx
import pytest

PROBLEM = "application/problem+json"


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
