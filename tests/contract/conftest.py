"""The API contract, black-box over HTTP: one suite, two targets.

By default (``make test``) the client is the real app with its lifespan, on the test
session's own Postgres (through PgBouncer in transaction mode) and Redis. With
``STAMPEDE_CONTRACT_BASE_URL`` set (``make e2e`` sets it to the port-forwarded api in
kind) the very same tests talk to that URL, with the all-scopes key in
``STAMPEDE_CONTRACT_API_KEY`` (made with the key CLI in an api pod). The tests therefore
never reach into the database: they create what they read, with unique names, and
tolerate existing data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from services.core.settings import Settings
from tests.support.api import make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint

BASE_URL_ENV = "STAMPEDE_CONTRACT_BASE_URL"
API_KEY_ENV = "STAMPEDE_CONTRACT_API_KEY"


@pytest.fixture(scope="session")
def contract_target(request: pytest.FixtureRequest) -> str | Settings:
    """The base URL to test, or the settings of a local app (servers started on demand,
    outside the event loop: migrations run their own)."""
    base_url = os.environ.get(BASE_URL_ENV)
    if base_url:
        return base_url
    postgres: DatabaseEndpoint = request.getfixturevalue("migrated_postgres")
    pgbouncer: DatabaseEndpoint = request.getfixturevalue("pgbouncer_server")
    redis: RedisEndpoint = request.getfixturevalue("cache_redis_server")
    return make_settings(postgres, pgbouncer, redis)


@pytest.fixture(scope="session")
async def contract_client(contract_target: str | Settings) -> AsyncIterator[httpx.AsyncClient]:
    if isinstance(contract_target, str):
        headers = {"Authorization": f"Bearer {os.environ[API_KEY_ENV]}"}
        async with httpx.AsyncClient(
            base_url=contract_target, timeout=10, headers=headers
        ) as client:
            yield client
        return
    async with running_api(contract_target) as api:
        # Other modules restart ids in the shared database: a response they left in the
        # shared cache could describe another row with the same id.
        await api.resources.cache_redis.flushdb()
        if api.resources.response_cache is not None:
            api.resources.response_cache.tiers.clear_local()
        yield api.client
