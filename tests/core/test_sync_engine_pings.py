"""The worker's and relay's engine pings a pooled connection only after it sat idle:
under load no ping per checkout, after a pause a dead connection is replaced, never
handed out."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text

from services.core import db
from services.core.settings import DatabaseSettings
from tests.support.endpoints import DatabaseEndpoint


def test_a_connection_used_again_at_once_is_not_pinged(
    migrated_postgres: DatabaseEndpoint,
) -> None:
    engine = db.create_sync_engine(migrated_postgres.url, DatabaseSettings(), pool_size=1)
    pings = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(1) or ping(connection)  # type: ignore[method-assign]
    try:
        for _ in range(5):
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()
    assert pings == []


def test_a_connection_that_died_while_idle_is_replaced(
    migrated_postgres: DatabaseEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.1)
    engine = db.create_sync_engine(migrated_postgres.url, DatabaseSettings(), pool_size=1)
    try:
        with engine.connect() as conn:
            first = conn.scalar(text("SELECT pg_backend_pid()"))
        with psycopg.connect(migrated_postgres.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        time.sleep(0.2)
        with engine.connect() as conn:
            second = conn.scalar(text("SELECT pg_backend_pid()"))
    finally:
        engine.dispose()
    assert second != first
