"""The api under test: the real app on real Postgres (through PgBouncer) and Redis.

The app runs in-process (httpx's ASGI transport) with its real lifespan, so tests can
also reach its engine, e.g. to count SQL statements. Its client sends an all-scopes API
key (``RunningApi.token``); tests of access itself override the header.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import Receive, Scope, Send

from services.api.main import create_app
from services.api.resources import Resources
from services.core.settings import Settings
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint
from tests.support.keys import TEST_KEY_SECRET, bearer, make_key
from tests.support.limits import UNLIMITED


def make_settings(
    postgres: DatabaseEndpoint, pgbouncer: DatabaseEndpoint, redis: RedisEndpoint, **db: Any
) -> Settings:
    db = {"pooler_tracks_prepared_statements": pgbouncer.tracks_prepared_statements, **db}
    return Settings(
        profile="prod",
        db={"url": pgbouncer.url, "migration_url": postgres.url, **db},
        redis={"cache_url": redis.url},
        log={"level": "WARNING", "json_format": True, "access_log": False},
        # The session's api outlives the default key-cache TTL and flush interval: a
        # reload or a flush inside a test that counts SQL statements would be counted.
        # The tests of those two set their own.
        auth={"hmac_key": TEST_KEY_SECRET, "key_cache_ttl_s": 86400, "last_used_flush_s": 3600},
        rate_limit=UNLIMITED,
    )


@dataclass
class RunningApi:
    app: FastAPI
    client: httpx.AsyncClient
    resources: Resources
    # The all-scopes key the client sends.
    token: str


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[RunningApi]:
    """Run ``create_app(settings)`` with its lifespan, as a server would."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        resources = state["resources"]
        # Straight to Postgres: some tests run the app on a database it cannot reach.
        engine = create_async_engine(settings.migration_database_url)
        try:
            token = await make_key(engine)
        finally:
            await engine.dispose()
        # Known before any request that counts statements (where the database is up).
        with contextlib.suppress(DBAPIError, OSError):
            await resources.api_keys.authenticate(token)
        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=bearer(token)
        ) as client:
            yield RunningApi(app=app, client=client, resources=resources, token=token)


@contextmanager
def count_statements(resources: Resources) -> Iterator[list[str]]:
    """Collect every SQL statement the app's engine sends while the block runs."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    target = resources.engine.sync_engine
    event.listen(target, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(target, "before_cursor_execute", record)
