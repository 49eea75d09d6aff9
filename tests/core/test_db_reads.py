"""Lean reads: the driver runs a compiled Core select on a pooled connection, safe behind
either PgBouncer, seen by the engine's statement events, failing as SQLAlchemy does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import bindparam, event, literal, select
from sqlalchemy.exc import DBAPIError

from services.core.db import create_engine, create_read_engine, is_outage
from services.core.db_reads import LeanRead
from services.core.settings import DatabaseSettings
from tests.support.endpoints import DatabaseEndpoint

DOUBLED = LeanRead(select((bindparam("n") * 2).label("doubled"), literal("x").label("tag")))


async def test_lean_reads_survive_many_clients_on_few_server_connections(
    pooler: DatabaseEndpoint,
) -> None:
    """40 client connections, 4 server connections: in autocommit behind a pooler that
    tracks prepared statements, in a transaction behind one that does not."""
    settings = DatabaseSettings(
        pooler_tracks_prepared_statements=pooler.tracks_prepared_statements,
        pool_size=40,
    )
    engine = create_engine(pooler.url, settings)
    reads = create_read_engine(engine, settings)

    async def read(i: int) -> int:
        async with reads.connect() as connection:
            rows = await DOUBLED.fetch(connection, n=i)
            assert rows[0]["tag"] == "x"
            return int(rows[0]["doubled"])

    try:
        for _ in range(5):
            results = await asyncio.gather(*(read(i) for i in range(120)), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            assert errors == [], errors[:3]
            assert results == [2 * i for i in range(120)]
    finally:
        await engine.dispose()


async def test_lean_reads_are_seen_by_the_engines_statement_events(
    pgbouncer_server: DatabaseEndpoint,
) -> None:
    engine = create_engine(pgbouncer_server.url, DatabaseSettings(pool_size=1))
    reads = create_read_engine(engine, DatabaseSettings())
    seen: list[tuple[str, str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def before(*args: Any) -> None:
        seen.append(("before", args[2], args[3]))

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def after(*args: Any) -> None:
        seen.append(("after", args[2], args[3]))

    try:
        async with reads.connect() as connection:
            await DOUBLED.fetch(connection, n=21)
    finally:
        await engine.dispose()
    sql, _ = DOUBLED.compiled(engine.dialect)
    assert [(when, text) for when, text, _ in seen] == [("before", sql), ("after", sql)]
    assert 21 in seen[0][2]


async def test_lean_read_errors_are_sqlalchemys(pgbouncer_server: DatabaseEndpoint) -> None:
    """A bad statement is a DBAPIError that is no outage; a connection killed under the
    read is an outage, and the pool never hands that connection out again."""
    engine = create_engine(pgbouncer_server.url, DatabaseSettings(pool_size=1))
    reads = create_read_engine(engine, DatabaseSettings())
    division = LeanRead(select((literal(1) / bindparam("zero")).label("x")))
    try:
        async with reads.connect() as connection:
            with pytest.raises(DBAPIError) as bad:
                await division.fetch(connection, zero=0)
        assert not is_outage(bad.value)
        async with reads.connect() as connection:
            raw = await connection.get_raw_connection()
            raw.driver_connection.terminate()
            with pytest.raises((DBAPIError, ConnectionError)) as gone:
                await DOUBLED.fetch(connection, n=1)
        assert is_outage(gone.value)
        async with reads.connect() as connection:  # a fresh connection, not the dead one
            assert (await DOUBLED.fetch(connection, n=2))[0]["doubled"] == 4
    finally:
        await engine.dispose()
