"""The api under test: the real app on real Postgres (through PgBouncer) and Redis.

The app runs in-process (httpx's ASGI transport) with its real lifespan, so tests can
also reach its engine, e.g. to count SQL statements.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from starlette.types import Receive, Scope, Send

from services.api.main import create_app
from services.api.resources import Resources
from services.core.settings import Settings
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint


def make_settings(
    postgres: DatabaseEndpoint, pgbouncer: DatabaseEndpoint, redis: RedisEndpoint, **db: Any
) -> Settings:
    db = {"pooler_tracks_prepared_statements": pgbouncer.tracks_prepared_statements, **db}
    return Settings(
        profile="prod",
        db={"url": pgbouncer.url, "migration_url": postgres.url, **db},
        redis={"cache_url": redis.url},
        log={"level": "WARNING", "json_format": True, "access_log": False},
    )


@dataclass
class RunningApi:
    app: FastAPI
    client: httpx.AsyncClient
    resources: Resources


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[RunningApi]:
    """Run ``create_app(settings)`` with its lifespan, as a server would."""
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        assert state is not None

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield RunningApi(app=app, client=client, resources=state["resources"])


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
