"""Lean reads: a Core ``select()`` compiled once, run by asyncpg itself on a connection
of the api's pool.

SQLAlchemy's execution path (compiled-cache lookup, execution context, cursor adapter,
result wrapping, one greenlet hop each way) cost about as much as the driver's own work
for a one-row read: in one measurement 300-370 µs of CPU per point read through
``AsyncConnection.execute`` against 170-190 µs for ``asyncpg.Connection.fetch`` on a
connection of the same pool (the benchmark docs). A hot read is one statement that
needs none of it, so :class:`LeanRead` hands the statement SQLAlchemy compiled (the same
text, with the same parameter casts) straight to the driver and returns its records.

What SQLAlchemy's path gave and this one keeps:

* the pool, its checkout and return, and the read engine's choice of transaction: in
  autocommit (a pooler that tracks prepared statements) the statement is one round
  trip; otherwise it runs in a transaction, so that its prepare and its execute share a
  server connection (``services.core.db.create_read_engine``);
* the engine's ``before_cursor_execute``/``after_cursor_execute`` events, with the SQL
  text and parameters: ``Server-Timing`` and the tests that count statements see every
  statement, whichever path ran it;
* errors as SQLAlchemy raises them (``DBAPIError`` over the driver's error, the
  connection invalidated when it is gone), so an outage is told from a bad statement by
  the same ``services.core.db.is_outage``.

The records are ``asyncpg.Record``: by index or column name; enum columns as their
string values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class LeanRead:
    """``statement`` (a Core select with named ``bindparam``s), compiled on first use for
    the connection's dialect; run with :meth:`fetch`."""

    __slots__ = ("_defaults", "_parameters", "_sql", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._sql: str | None = None
        self._parameters: tuple[str, ...] = ()
        self._defaults: dict[str, Any] = {}

    def compiled(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The SQL text the dialect sends and its parameters' names in placeholder order."""
        if self._sql is None:
            compiled = self.statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            self._parameters = tuple(compiled.positiontup or ())
            # Values bound in the statement itself (literals become parameters too).
            self._defaults = dict(compiled.params)
            self._sql = str(compiled)
        return self._sql, self._parameters

    async def fetch(self, connection: AsyncConnection, **values: Any) -> list[asyncpg.Record]:
        """Every row of the statement with ``values`` bound, on ``connection`` (checked out:
        the caller returns it to the pool)."""
        sync = connection.sync_connection
        assert sync is not None, "the connection must be started"
        sql, names = self.compiled(sync.dialect)
        bound = self._defaults | values if self._defaults else values
        arguments = tuple(bound[name] for name in names)
        proxied = await connection.get_raw_connection()
        driver: asyncpg.Connection = proxied.driver_connection
        autocommit = sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        dispatch: Any = sync.dispatch
        dispatch.before_cursor_execute(sync, None, sql, arguments, None, False)
        records: list[asyncpg.Record]
        try:
            if autocommit:
                records = await driver.fetch(sql, *arguments)
            else:
                async with driver.transaction():
                    records = await driver.fetch(sql, *arguments)
        except Exception as error:
            raise await _as_sqlalchemy_error(connection, proxied, error, sql, arguments) from error
        dispatch.after_cursor_execute(sync, None, sql, arguments, None, False)
        return records


async def _as_sqlalchemy_error(
    connection: AsyncConnection,
    proxied: Any,
    error: Exception,
    sql: str,
    arguments: Sequence[object],
) -> BaseException:
    """``error`` from the driver as SQLAlchemy would have raised it: the dialect's DBAPI
    exception wrapped in ``DBAPIError``; a connection that is gone is invalidated, so the
    pool never hands it out again."""
    sync = connection.sync_connection
    assert sync is not None
    dialect = sync.dialect
    adapter = proxied.dbapi_connection
    try:
        adapter._handle_exception(error)  # raises the dialect's DBAPI exception for it
    except Exception as translated:
        dbapi_error = translated
    else:  # pragma: no cover - the adapter always raises
        dbapi_error = error
    if not isinstance(dbapi_error, dialect.loaded_dbapi.Error):
        return dbapi_error
    gone = dialect.is_disconnect(dbapi_error, adapter, None)
    if gone:
        await connection.invalidate(dbapi_error)
    return DBAPIError.instance(
        sql,
        tuple(arguments),
        dbapi_error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=gone,
        dialect=dialect,
    )
