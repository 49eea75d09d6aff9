"""The worker speaks libpq (psycopg) but gets the URL the chart writes for asyncpg."""

from __future__ import annotations

from services.core.db import libpq_dsn, psycopg_url


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
