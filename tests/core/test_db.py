"""The engines: the worker speaks libpq (psycopg) but gets the URL the chart writes for
asyncpg; the api's reads share its pool, in the mode the settings choose."""

from __future__ import annotations

from services.core.db import create_engine, create_read_engine, libpq_dsn, psycopg_url
from services.core.settings import DatabaseSettings


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


def test_reads_run_in_autocommit_only_when_the_settings_say_so() -> None:
    engine = create_engine("postgresql+asyncpg://u:p@h/d", DatabaseSettings())
    assert create_read_engine(engine, DatabaseSettings()) is engine
    autocommit = create_read_engine(engine, DatabaseSettings(reads_in_autocommit=True))
    assert autocommit.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
    assert autocommit.sync_engine.pool is engine.sync_engine.pool  # one pool for both
