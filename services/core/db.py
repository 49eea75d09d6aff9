"""The two database engines, both safe behind PgBouncer in transaction mode.

With transaction pooling, a client's next transaction may run on another server
connection (where a statement prepared earlier is unknown) and another client's
transaction may run on this one (where a name may already exist): "prepared statement ...
does not exist / already exists". PgBouncer >= 1.21 tracks prepared statements
(``max_prepared_statements``): it prepares a client's statement again on whichever server
connection runs it, under a name of its own. The local stack and the chart's sidecar run
PgBouncer 1.24 with it on, so by default (``db.pooler_tracks_prepared_statements``) both
engines keep their statements prepared and skip the parse and plan on every later run:

* :func:`create_engine` (the api: async SQLAlchemy + asyncpg): asyncpg's statement cache
  and SQLAlchemy's prepared statement cache, at their default sizes.
* :func:`create_sync_engine` (the worker and the relay: Celery tasks are synchronous, so
  psycopg 3 on the same database URL): psycopg prepares a statement once it ran
  ``prepare_threshold`` times on a connection (its default, 5), and deallocates with the
  protocol's Close message, which PgBouncer tracks too.

Behind a pooler that cannot track them (PgBouncer < 1.21, as Debian 12 ships, or a
managed pooler of unknown make), ``pooler_tracks_prepared_statements=false`` makes each
engine safe on its own: the api's keeps no statement caches (``statement_cache_size=0``,
``prepared_statement_cache_size=0``) and gives every prepared statement a unique name
(``prepared_statement_name_func``), so two clients can never collide on one server
connection; the worker's never prepares (``prepare_threshold=None``).

Both pools also ride out a restart of the pooler in front of them (the sidecar's
container restarting): the api's pool drops connections the pooler closed before handing
them out and retries a refused connect for ``connect_retry_s`` (see
:func:`_reconnecting`), so a restart costs latency, not failed requests.

Engines are built in the process that uses them (the ASGI lifespan after gunicorn has
forked, each Celery child after its fork), never at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

import asyncpg
import psycopg
from sqlalchemy import Engine, Enum, event
from sqlalchemy import create_engine as create_blocking_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from services.core.models import Base
from services.core.settings import DatabaseSettings


def _unique_statement_name() -> str:
    return f"__stampede_{uuid4().hex}__"


# SQLAlchemy's asyncpg dialect prepares every statement it runs. Without the caches each
# is prepared afresh, under a name no other client's statement can have.
_NO_STATEMENT_REUSE: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": _unique_statement_name,
}


def pgbouncer_safe_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """asyncpg connect() arguments that survive PgBouncer transaction pooling: statement
    caches on only when the pooler tracks prepared statements (see the module docstring)."""
    args: dict[str, Any] = {"timeout": settings.connect_timeout_s}
    if not settings.pooler_tracks_prepared_statements:
        args |= _NO_STATEMENT_REUSE
    if settings.statement_timeout_ms:
        # Client-side bound: a server-side statement_timeout would have to be a startup
        # parameter, which PgBouncer rejects, or a SET per transaction (a round trip).
        args["command_timeout"] = settings.statement_timeout_ms / 1000
    return args


# A refused connect: nothing listens (yet). Only this is retried: a timeout or a
# reset means a server that is there but failing, which a retry would only prolong.
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 0.5


def _native_enums() -> tuple[tuple[str, str], ...]:
    """(schema, name) of every Postgres enum type the models use."""
    found = {
        (str(column.type.schema or "public"), str(column.type.name))
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, Enum) and column.type.native_enum and column.type.name
    }
    return tuple(sorted(found))


_ENUMS = _native_enums()


async def _know_enums(connection: asyncpg.Connection) -> None:
    """Give the connection a codec for each of our enum types, as the strings asyncpg
    decodes them to anyway.

    Without one, the first statement a connection runs with an enum column or parameter
    makes asyncpg look the type up with its recursive type-introspection query, which
    Postgres plans expensively enough to JIT-compile. asyncpg switches JIT off around it
    with session-level ``set_config`` calls, but a read in autocommit behind PgBouncer's
    transaction pooling sends each of the three to whichever server connection is free:
    the query ran JIT-compiled, over a second of server CPU for every connection the
    pool opened (the benchmark docs), and the settings changed on random server
    connections. This lookup is a plain index scan, one round trip per type; in a
    transaction, so that behind a pooler that does not track prepared statements its
    prepare and execute share a server connection.
    """
    async with connection.transaction():
        for schema, name in _ENUMS:
            # A database the migrations have not reached yet lacks them: nothing to know.
            with contextlib.suppress(ValueError):
                await connection.set_type_codec(
                    name, schema=schema, encoder=str, decoder=str, format="text"
                )


def _reconnecting(
    retry_s: float,
) -> Callable[..., Awaitable[asyncpg.Connection]]:
    """``asyncpg.connect`` that retries a refused connection for up to ``retry_s``, and
    sets the connection up (:func:`_know_enums`)."""

    async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        deadline = time.monotonic() + retry_s
        delay = _RETRY_FIRST_S
        while True:
            try:
                connection = await asyncpg.connect(*args, **kwargs)
            except ConnectionRefusedError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            try:
                await _know_enums(connection)
            except BaseException:
                await connection.close(timeout=1)
                raise
            return connection

    return connect


def _drop_closed_on_checkout(
    dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    # The pooler closed this idle connection (it restarted, or timed the client out):
    # asyncpg noticed the EOF already, so checking costs no round trip. The pool then
    # discards it and connects anew instead of failing the request that drew it.
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the pooler closed this connection")


def create_engine(url: str, settings: DatabaseSettings) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_recycle=settings.pool_recycle_s,
        # A server restart is noticed by PgBouncer; the client side of the pool only
        # talks to the local sidecar, so a per-checkout ping would just add a round trip.
        pool_pre_ping=False,
        echo=settings.echo,
        connect_args={
            **pgbouncer_safe_connect_args(settings),
            # The asyncpg dialect connects through this callable when given one (it is
            # what its documented ``async_creator`` uses), with the URL's arguments.
            "async_creator_fn": _reconnecting(settings.connect_retry_s),
        },
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed_on_checkout)
    return engine


def create_read_engine(engine: AsyncEngine, settings: DatabaseSettings) -> AsyncEngine:
    """The engine lean reads check out connections from: ``engine``'s own pool, and the one
    place that decides whether a read runs inside a transaction.

    asyncpg prepares a statement and executes it in two round trips. Inside a
    transaction PgBouncer keeps both on one server connection; outside one (autocommit,
    no BEGIN and no COMMIT: two round trips saved) it may hand the execute to another
    server connection, where only a pooler that tracks prepared statements
    (``pooler_tracks_prepared_statements``: PgBouncer >= 1.21 ``max_prepared_statements``)
    has it. A read is one statement, so autocommit takes nothing from its consistency.
    """
    if settings.pooler_tracks_prepared_statements:
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without a lazy refresh,
    # which would be an implicit (and, with lazy="raise", forbidden) extra query.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


# SQLSTATE classes that mean "no usable connection", not "this statement failed":
# 08 connection exception (PgBouncer answers 08P01 when it cannot log in to Postgres),
# 57P01-03 the server is shutting down, crashed, or cannot accept connections yet.
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


# How an unreachable server shows before SQLAlchemy wraps anything: asyncpg's connect
# raises these as they are.
CONNECTION_ERRORS = (ConnectionError, TimeoutError, socket.gaierror)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached or used — a connection
    refused, reset, closed or timed out, the pooler unable to log in to Postgres, the
    server shutting down — rather than that a statement was wrong. An outage is waited
    out (503 with Retry-After, a task retry); a statement error is a bug or bad data.

    A refused connect comes from asyncpg unwrapped (an ``OSError``); the rest arrive as
    SQLAlchemy's ``DBAPIError``, which marks a dead connection ``connection_invalidated``.
    """
    if isinstance(error, CONNECTION_ERRORS):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES)
    return False


def _for_libpq(url: str, driver: str) -> URL:
    """``url`` with ``driver``; asyncpg's ``?ssl=MODE`` becomes libpq's ``?sslmode=MODE``
    (the chart writes one URL, in asyncpg's dialect, for every process)."""
    parsed = make_url(url).set(drivername=driver)
    ssl = parsed.query.get("ssl")
    if isinstance(ssl, str):
        parsed = parsed.difference_update_query(["ssl"]).update_query_dict({"sslmode": ssl})
    return parsed


def psycopg_url(url: str) -> URL:
    """``url`` (any ``postgresql+driver://``) for SQLAlchemy's psycopg 3 dialect."""
    return _for_libpq(url, "postgresql+psycopg")


def libpq_dsn(url: str) -> str:
    """``url`` as a plain libpq URL, for a raw psycopg connection (LISTEN)."""
    return _for_libpq(url, "postgresql").render_as_string(hide_password=False)


def _psycopg_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    args: dict[str, Any] = {"connect_timeout": max(1, round(settings.connect_timeout_s))}
    # psycopg evicts a statement from its cache with the protocol's Close message when its
    # libpq has one (>= 17; psycopg-binary bundles it), else with SQL `DEALLOCATE name`,
    # which PgBouncer passes to whichever server connection it chose.
    tracked = settings.pooler_tracks_prepared_statements
    if not (tracked and psycopg.capabilities.has_send_close_prepared()):
        args["prepare_threshold"] = None
    return args


# A pooled connection used again within this long is as alive as a ping could tell; one
# that sat idle longer (a worker between bursts, a relay at night) is pinged first.
PING_AFTER_IDLE_S = 1.0


def create_sync_engine(url: str, settings: DatabaseSettings, pool_size: int) -> Engine:
    engine = create_blocking_engine(
        psycopg_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout_s,
        pool_recycle=settings.pool_recycle_s,
        echo=settings.echo,
        connect_args=_psycopg_connect_args(settings),
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """A ping on checkout, as ``pool_pre_ping`` does, but only for a connection that sat
    idle for ``PING_AFTER_IDLE_S``: a worker may wait hours between tasks, and the ping
    turns a dead pooled connection into a reconnect instead of a failed (and retried)
    task; under load, pinging every checkout was two of the round trips of every email.
    """

    def on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    def on_checkout(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another (or connects).
            raise DisconnectionError("the pooled connection is gone") from error

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)
