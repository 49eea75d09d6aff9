"""Anything unexpected is a 500 problem with the request id — also when it fails in the
layers outside FastAPI's own error middleware (the response cache)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.exc import ProgrammingError
from starlette.types import Receive, Scope, Send

from services.core.shop import products
from tests.support.api import RunningApi


@pytest.fixture
async def lenient_client(api: RunningApi, clean_cache: None) -> AsyncIterator[httpx.AsyncClient]:
    """A client that receives the 500 the app sends (instead of the re-raised error)."""
    state = {"resources": api.resources}

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"] = dict(state)
        await api.app(scope, receive, send)

    transport = httpx.ASGITransport(app=with_state, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def _problem(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["request_id"] == response.headers["x-request-id"] == "boom-1"
    assert body["title"] == "Internal server error"
    return body


async def test_a_failure_in_the_response_cache_is_a_500_problem(
    api: RunningApi, lenient_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.resources.response_cache is not None

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the cache layer")

    monkeypatch.setattr(api.resources.response_cache.routes, "resolve", broken)
    response = await lenient_client.get("/products", headers={"X-Request-ID": "boom-1"})
    assert _problem(response)["instance"] == "/products"


async def test_a_failing_route_behind_the_cache_is_a_500_problem_and_not_cached(
    api: RunningApi, lenient_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def broken(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the database said something odd")

    monkeypatch.setattr(products, "list_products", broken)
    for _ in range(2):
        response = await lenient_client.get("/products", headers={"X-Request-ID": "boom-1"})
        _problem(response)
    assert calls == 2  # the 500 was not stored


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),
        # A statement error is no outage: a 500 like any bug, not a 503 to retry.
        ProgrammingError("SELECT nonsense", {}, Exception("syntax error at or near")),
    ],
    ids=["bug", "statement error"],
)
async def test_an_unexpected_error_is_answered_and_logged_once_without_reaching_the_server(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    """Re-raised to the server, the error would be logged a second time there and the
    client's keep-alive connection closed (httpx's ASGI transport raises it here)."""

    async def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(products, "list_products", broken)
    with caplog.at_level("ERROR"):
        response = await client.get("/products", headers={"X-Request-ID": "boom-1"})
    _problem(response)
    logged = [record for record in caplog.records if record.exc_info]
    assert [record.getMessage() for record in logged] == ["unhandled exception"]
