from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from services.core.models import Base
from services.migrations import runner
from tests.conftest import DatabaseEndpoint


def test_migrations_match_the_models_and_0002_reverts_cleanly(
    postgres_server: DatabaseEndpoint,
) -> None:
    runner.upgrade(postgres_server.url)
    runner.downgrade(postgres_server.url, "0001")
    runner.upgrade(postgres_server.url)
    engine = create_engine(postgres_server.url.replace("+asyncpg", "+psycopg"))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
