"""The retention sweep deletes finished outbox rows and idempotency keys past their
retention, in batches, and nothing that is still work to do."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import Engine

from services.core.db import create_sync_engine
from services.core.settings import Settings
from services.worker import retention

DAY_S = 86_400


@pytest.fixture
def engine(worker_settings: Settings, clean: None) -> Iterator[Engine]:
    engine = create_sync_engine(worker_settings.database_url, worker_settings.db, pool_size=1)
    yield engine
    engine.dispose()


# The timestamps each state sets (the column names are ours, never input).
STATE_COLUMNS = {
    "done": ("published_at", "done_at"),
    "dead": ("published_at", "dead_at"),
    "published": ("published_at",),
    "unpublished": ("created_at",),
}


async def _outbox_row(db: asyncpg.Connection, state: str, days_ago: int) -> int:
    """An outbox row whose last transition (its ``state``) happened ``days_ago``."""
    columns = STATE_COLUMNS[state]
    values = ", ".join("now() - make_interval(days => $1)" for _ in columns)
    row_id: int = await db.fetchval(
        f"INSERT INTO outbox (task, payload, {', '.join(columns)})"  # noqa: S608
        f" VALUES ('t', '{{}}', {values}) RETURNING id",
        days_ago,
    )
    return row_id


async def test_deletes_only_what_outlived_its_retention(
    engine: Engine, db: asyncpg.Connection
) -> None:
    old_done = [await _outbox_row(db, "done", 8) for _ in range(5)]
    kept = [
        await _outbox_row(db, "done", 6),
        await _outbox_row(db, "dead", 30),
        await _outbox_row(db, "published", 30),
        await _outbox_row(db, "unpublished", 30),
    ]
    for key, hours_ago in (("old-1", 25), ("old-2", 48), ("fresh", 23)):
        await db.execute(
            "INSERT INTO idempotency_keys (key, request_fingerprint, created_at)"
            " VALUES ($1, 'f', now() - make_interval(hours => $2))",
            key,
            hours_ago,
        )

    swept = retention.sweep(
        engine, outbox_retention_s=7 * DAY_S, idempotency_key_retention_s=DAY_S, batch_size=2
    )

    assert swept == retention.Swept(outbox_rows=len(old_done), idempotency_keys=2)
    assert sorted(r["id"] for r in await db.fetch("SELECT id FROM outbox")) == sorted(kept)
    assert [r["key"] for r in await db.fetch("SELECT key FROM idempotency_keys")] == ["fresh"]
