"""Async engine and session factory, safe behind PgBouncer in transaction mode.

asyncpg prepares every statement under a name and caches it on the connection. With
transaction pooling, the next transaction of the same client may run on another server
connection (where the name is unknown) and another client's transaction may run on this
one (where the name already exists): "prepared statement ... does not exist / already
exists". PgBouncer >= 1.21 can track prepared statements (``max_prepared_statements``),
but Debian ships 1.18 and managed poolers vary, so the app is made safe on its own:

* no statement caches (``statement_cache_size=0``, ``prepared_statement_cache_size=0``);
* a unique name for every prepared statement (``prepared_statement_name_func``), so two
  clients can never collide on one server connection.

Engines are built in the process that uses them (the ASGI lifespan, after gunicorn has
forked), never at import time.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.core.settings import DatabaseSettings


def _unique_statement_name() -> str:
    return f"__stampede_{uuid4().hex}__"


def pgbouncer_safe_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """asyncpg connect() arguments that survive PgBouncer transaction pooling."""
    args: dict[str, Any] = {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
        "timeout": settings.connect_timeout_s,
    }
    if settings.statement_timeout_ms:
        # Client-side bound: a server-side statement_timeout would have to be a startup
        # parameter, which PgBouncer rejects, or a SET per transaction (a round trip).
        args["command_timeout"] = settings.statement_timeout_ms / 1000
    return args


def create_engine(url: str, settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_recycle=settings.pool_recycle_s,
        # A server restart is noticed by PgBouncer; the client side of the pool only
        # talks to the local sidecar, so a per-checkout ping would just add a round trip.
        pool_pre_ping=False,
        echo=settings.echo,
        connect_args=pgbouncer_safe_connect_args(settings),
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without a lazy refresh,
    # which would be an implicit (and, with lazy="raise", forbidden) extra query.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
