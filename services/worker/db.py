"""A synchronous engine for the worker and the relay, safe behind PgBouncer.

Celery tasks are synchronous, so this side uses psycopg 3 rather than asyncpg (same
database URL, other driver). psycopg prepares a statement once it ran
``prepare_threshold`` times on a connection; under PgBouncer's transaction pooling the
next run may land on another server connection, where the name is unknown. So: never
prepare (``prepare_threshold=None``). Built in the process that uses it, after fork.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url

from services.core.settings import DatabaseSettings


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


def create_sync_engine(url: str, settings: DatabaseSettings, pool_size: int) -> Engine:
    return create_engine(
        psycopg_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout_s,
        pool_recycle=settings.pool_recycle_s,
        # A worker may sit idle for hours between tasks; a ping on checkout turns a dead
        # pooled connection into a reconnect instead of a failed (and retried) task.
        pool_pre_ping=True,
        echo=settings.echo,
        connect_args={
            "prepare_threshold": None,
            "connect_timeout": max(1, round(settings.connect_timeout_s)),
        },
    )
