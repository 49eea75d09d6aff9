from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY

from tests.support.api import RunningApi
from tests.support.factories import create_user


def series(prefix: str = "stampede_http_") -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in REGISTRY.collect()
        if family.name.startswith(prefix)
        for sample in family.samples
    }


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_requests_are_counted_by_route_template(
    api: RunningApi, client: httpx.AsyncClient
) -> None:
    user = await create_user(client)
    labels = {"method": "GET", "route": "/users/{user_id}", "status_class": "2xx"}
    api.resources.metric_batch.flush()
    before = sample("stampede_http_requests_total", **labels)
    await client.get(f"/users/{user['id']}")
    await client.get("/no/such/path")
    # Samples are buffered per process and written out every second (and at shutdown).
    api.resources.metric_batch.flush()
    assert sample("stampede_http_requests_total", **labels) == before + 1
    assert sample(
        "stampede_http_requests_total", method="GET", route="<unmatched>", status_class="4xx"
    )
    assert sample(
        "stampede_http_request_duration_seconds_count", method="GET", route="/users/{user_id}"
    )


async def test_series_stay_bounded_over_10000_distinct_ids(
    api: RunningApi, client: httpx.AsyncClient
) -> None:
    await client.get("/users/1")
    await client.request("BREW", "/users/2")  # an unknown method must not mint a label
    api.resources.metric_batch.flush()
    baseline = series()
    for start in range(1, 10_001, 200):
        await asyncio.gather(*(client.get(f"/users/{i}") for i in range(start, start + 200)))
    await client.request("BREW", "/users/3")
    api.resources.metric_batch.flush()
    assert series() == baseline


async def test_server_timing_reports_app_and_database_time(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    timing = (await client.get(f"/users/{user['id']}")).headers["server-timing"]
    parts = dict(part.strip().split(";", 1) for part in timing.split(","))
    assert parts["app"].startswith("dur=")
    assert parts["db"].startswith("dur=")
    assert 'desc="1 statements"' in parts["db"]
    assert "db" not in (await client.get("/livez")).headers["server-timing"]
