"""The engines: the URLs the worker's libpq gets, and prepared statements behind
PgBouncer's transaction pooling, with the pooler tracking them (1.24, statements cached)
and without (Debian 12's 1.18, safe mode); the api's reads share its pool, in autocommit
only when the pooler tracks prepared statements."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from devstack.servers import free_port
from services.core.db import (
    create_engine,
    create_read_engine,
    create_sync_engine,
    libpq_dsn,
    psycopg_url,
)
from services.core.settings import DatabaseSettings
from tests.support.endpoints import DatabaseEndpoint, pgbouncer_in_front_of
from tests.support.pgbouncer_admin import database_stats


def test_asyncpg_ssl_becomes_libpq_sslmode() -> None:
    url = "postgresql+asyncpg://shop:p%40ss@db.internal:5432/shop?ssl=require"
    converted = psycopg_url(url)
    assert converted.drivername == "postgresql+psycopg"
    assert dict(converted.query) == {"sslmode": "require"}
    assert libpq_dsn(url) == "postgresql://shop:p%40ss@db.internal:5432/shop?sslmode=require"


def test_plain_urls_keep_their_options() -> None:
    assert libpq_dsn("postgresql+asyncpg://u:p@h/d") == "postgresql://u:p@h/d"
    assert dict(psycopg_url("postgresql+asyncpg://u:p@h/d?application_name=x").query) == {
        "application_name": "x"
    }


def test_reads_run_in_autocommit_only_when_the_pooler_tracks_prepared_statements() -> None:
    safe = DatabaseSettings(pooler_tracks_prepared_statements=False)
    engine = create_engine("postgresql+asyncpg://u:p@h/d", safe)
    assert create_read_engine(engine, safe) is engine
    autocommit = create_read_engine(engine, DatabaseSettings())
    assert autocommit.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
    assert autocommit.sync_engine.pool is engine.sync_engine.pool  # one pool for both


# --- prepared statements behind PgBouncer's transaction pooling ------------------------

STATEMENTS = [
    "SELECT CAST(:i AS integer) + 1",
    "SELECT CAST(:i AS integer) * 2, now()",
    "SELECT count(*) FROM generate_series(1, CAST(:i AS integer) % 7 + 1)",
]


def settings_for(pooler: DatabaseEndpoint, **overrides: Any) -> DatabaseSettings:
    """What a deployment behind ``pooler`` would configure."""
    tracks = pooler.tracks_prepared_statements
    return DatabaseSettings(pooler_tracks_prepared_statements=tracks, **overrides)


async def test_api_engine_survives_many_clients_on_few_server_connections(
    pooler: DatabaseEndpoint,
) -> None:
    """60 client connections, 4 server connections, the same few statements from all."""
    engine = create_engine(pooler.url, settings_for(pooler, pool_size=60, max_overflow=0))

    async def query(i: int) -> int:
        async with engine.connect() as connection:
            result = await connection.execute(text(STATEMENTS[i % 3]), {"i": i})
            await connection.commit()
            return len(result.all())

    try:
        for _ in range(10):
            results = await asyncio.gather(*(query(i) for i in range(150)), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            assert errors == [], errors[:3]
    finally:
        await engine.dispose()


def test_worker_engine_survives_many_clients_on_few_server_connections(
    pooler: DatabaseEndpoint,
) -> None:
    """12 threads, each with its own client connection, run every statement past psycopg's
    prepare threshold on 4 server connections."""
    engine = create_sync_engine(pooler.url, settings_for(pooler), pool_size=12)

    def work(thread: int) -> None:
        for i in range(40):
            with engine.connect() as connection:
                connection.execute(text(STATEMENTS[i % 3]), {"i": thread * 100 + i}).all()
                connection.commit()

    try:
        with ThreadPoolExecutor(12) as threads:
            futures = [threads.submit(work, thread) for thread in range(12)]
        errors = [f.exception() for f in futures if f.exception() is not None]
        assert errors == [], errors[:3]
    finally:
        engine.dispose()


@pytest.fixture
def own_pgbouncer(
    servers_dir: Path, postgres_server: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    """A PgBouncer 1.24 no other test uses, so its counters count only this test's work."""
    workdir = servers_dir / f"pgbouncer-{free_port()}"
    with pgbouncer_in_front_of(postgres_server, workdir) as pgbouncer:
        yield pgbouncer


def parse_and_bind_counts(pgbouncer: DatabaseEndpoint) -> tuple[int, int]:
    """Named statements clients prepared (Parse) and ran (Bind) through ``pgbouncer``."""
    stats = database_stats(pgbouncer)
    return stats.get("total_client_parse_count", 0), stats.get("total_bind_count", 0)


@pytest.mark.parametrize("tracks", [True, False], ids=["caching", "safe-mode"])
async def test_api_engine_prepares_a_statement_once_when_the_pooler_tracks_them(
    own_pgbouncer: DatabaseEndpoint, tracks: bool
) -> None:
    settings = DatabaseSettings(pooler_tracks_prepared_statements=tracks, pool_size=1)
    engine = create_engine(own_pgbouncer.url, settings)

    async def run(i: int) -> None:
        async with engine.connect() as connection:
            await connection.execute(text(STATEMENTS[0]), {"i": i})
            await connection.commit()

    try:
        await run(0)  # connects, and prepares the statement the first time
        parses, binds = parse_and_bind_counts(own_pgbouncer)
        for i in range(30):
            await run(i)
        more_parses, more_binds = parse_and_bind_counts(own_pgbouncer)
    finally:
        await engine.dispose()
    assert more_binds - binds == 30
    # Safe mode is the control: the counter does see a statement prepared on every run.
    assert more_parses - parses == (0 if tracks else 30)


@pytest.mark.parametrize("tracks", [True, False], ids=["caching", "safe-mode"])
def test_worker_engine_prepares_statements_when_the_pooler_tracks_them(
    own_pgbouncer: DatabaseEndpoint, tracks: bool
) -> None:
    settings = DatabaseSettings(pooler_tracks_prepared_statements=tracks)
    engine = create_sync_engine(own_pgbouncer.url, settings, pool_size=1)
    try:
        for i in range(30):
            with engine.connect() as connection:
                connection.execute(text(STATEMENTS[0]), {"i": i}).all()
                connection.commit()
    finally:
        engine.dispose()
    parses, binds = parse_and_bind_counts(own_pgbouncer)
    # psycopg runs a statement unnamed (uncounted) five times (its prepare_threshold),
    # then prepares it once under a name and binds that; in safe mode it never names one.
    assert (parses, binds) == ((1, 25) if tracks else (0, 0))


async def test_api_connections_never_run_asyncpg_type_introspection(
    pooler: DatabaseEndpoint, migrated_postgres: DatabaseEndpoint
) -> None:
    """A statement with our enum types, as column and as parameter, on a new connection:
    asyncpg knows them from the connect, so it never sends its recursive introspection
    query. Behind a transaction pooler outside a transaction, the ``SET jit = off`` asyncpg
    wraps that query in lands on other server connections: it ran JIT-compiled, over a
    second of server CPU for each connection the pool opened."""
    engine = create_engine(pooler.url, settings_for(pooler))
    sent: list[str] = []
    try:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            driver.add_query_logger(lambda record: sent.append(record.query))
            result = await connection.execute(
                text(
                    "SELECT status, confirmation_status FROM orders"
                    " WHERE status = CAST(:status AS order_status) LIMIT 0"
                ),
                {"status": "placed"},
            )
            assert result.all() == []  # the types are described all the same
            await connection.commit()
    finally:
        await engine.dispose()
    assert "BEGIN;" in sent  # the logger does see what asyncpg sends by itself
    assert not [query for query in sent if "typeinfo" in query]
