"""The pooler in front of the api restarts (its sidecar container, a config rollout):
requests wait for it instead of failing.

Two things make that so (``services/core/db.py``): the pool drops connections the pooler
closed before handing them out, and a refused connect is retried for
``connect_retry_s``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devstack.servers import free_port
from tests.support.api import RunningApi, make_settings, running_api
from tests.support.endpoints import (
    DatabaseEndpoint,
    RedisEndpoint,
    RestartablePooler,
    restartable_pooler,
)

CONCURRENT = 20


@pytest.fixture
def pooler(servers_dir: Path, migrated_postgres: DatabaseEndpoint) -> Iterator[RestartablePooler]:
    with restartable_pooler(servers_dir, migrated_postgres, "restart") as pooler:
        yield pooler


@pytest.fixture
async def api(
    migrated_postgres: DatabaseEndpoint,
    pooler: RestartablePooler,
    cache_redis_server: RedisEndpoint,
) -> AsyncIterator[RunningApi]:
    settings = make_settings(migrated_postgres, pooler.endpoint(), cache_redis_server)
    settings = settings.model_copy(
        update={"cache": settings.cache.model_copy(update={"enabled": False})}
    )
    async with running_api(settings) as api:
        yield api


async def reads(api: RunningApi, user_id: int) -> list[int]:
    responses = await asyncio.gather(
        *(api.client.get(f"/users/{user_id}") for _ in range(CONCURRENT))
    )
    return [response.status_code for response in responses]


async def a_user(api: RunningApi) -> int:
    created = await api.client.post(
        "/users", json={"email": f"restart-{free_port()}@example.com", "name": "R"}
    )
    assert created.status_code == 201, created.text
    user_id: int = created.json()["id"]
    return user_id


async def test_connections_the_pooler_closed_are_replaced_not_failed(
    api: RunningApi, pooler: RestartablePooler
) -> None:
    user_id = await a_user(api)
    assert set(await reads(api, user_id)) == {200}  # the pool now holds several
    pooler.stop()
    pooler.start()
    await asyncio.sleep(0.05)  # a live server's loop sees the closed sockets meanwhile
    assert set(await reads(api, user_id)) == {200}


async def test_a_request_waits_for_a_pooler_that_is_coming_back(
    api: RunningApi, pooler: RestartablePooler
) -> None:
    user_id = await a_user(api)
    pooler.stop()
    await asyncio.sleep(0.05)  # as above: the loop sees the pooled connection closed
    comes_back = threading.Timer(0.5, pooler.start)
    comes_back.start()
    try:
        assert set(await reads(api, user_id)) == {200}
    finally:
        comes_back.join()
