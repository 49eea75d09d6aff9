from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.models import Base
from services.migrations import runner
from tests.support.endpoints import DatabaseEndpoint


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(migrated_postgres: DatabaseEndpoint) -> None:
    engine = create_async_engine(migrated_postgres.url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


def test_downgrade_and_upgrade_round_trip(postgres_server: DatabaseEndpoint) -> None:
    """On a scratch database, so the shared schema is never torn down mid-session."""

    assert postgres_server.admin is not None
    postgres_server.admin.psql("DROP DATABASE IF EXISTS migrations_scratch")
    postgres_server.admin.psql("CREATE DATABASE migrations_scratch OWNER stampede")
    url = postgres_server.url.rsplit("/", 1)[0] + "/migrations_scratch"
    runner.upgrade(url)
    runner.downgrade(url, "base")
    runner.upgrade(url)
