"""The outbox's lifecycle on the worker side: publish, finish, dead-letter, retry.

Every function takes a connection inside a transaction that the caller owns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Update, func, select, text, update

from services.core.models import ConfirmationStatus, Order, OutboxMessage
from services.core.outbox import OUTBOX_CHANNEL

# Long enough to see what went wrong, short enough to keep a traceback out of the table.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    task: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    task: str
    payload: dict[str, Any]
    created_at: datetime
    dead_at: datetime
    publish_count: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Backlog:
    """Rows not yet handed to the broker, and how long the oldest has waited."""

    unpublished: int
    oldest_age_s: float


def lock_unpublished(conn: Connection, limit: int) -> list[Pending]:
    """The oldest unpublished rows, locked; rows another relay holds are skipped, so
    several relays share the backlog without ever publishing the same row twice."""
    rows = conn.execute(
        select(OutboxMessage.id, OutboxMessage.task, OutboxMessage.payload)
        .where(OutboxMessage.published_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [Pending(row.id, row.task, row.payload) for row in rows]


def mark_published(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(published_at=func.now(), publish_count=OutboxMessage.publish_count + 1)
        )


def republish_stale(conn: Connection, older_than_s: float) -> int:
    """Hand rows published long ago whose task never finished back to the relay."""
    result = conn.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.done_at.is_(None),
            OutboxMessage.dead_at.is_(None),
            OutboxMessage.published_at
            < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s),
        )
        .values(published_at=None)
    )
    return result.rowcount


def done_update(outbox_id: int) -> Update:
    """The statement that marks the row done: the caller runs it, alone or combined with
    its own statements (one round trip)."""
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.done_at.is_(None))
        .values(done_at=func.now(), dead_at=None)
    )


def mark_dead(conn: Connection, outbox_id: int, order_id: int | None, error: str) -> None:
    """Park the row as a dead letter; the order's confirmation shows ``failed``."""
    conn.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.done_at.is_(None))
        .values(dead_at=func.now(), last_error=error[:MAX_ERROR_CHARS])
    )
    if order_id is not None:
        conn.execute(
            update(Order)
            .where(Order.id == order_id, Order.confirmation_status != ConfirmationStatus.SENT)
            .values(confirmation_status=ConfirmationStatus.FAILED)
        )


def list_dead(conn: Connection, limit: int = 100) -> list[DeadLetter]:
    rows = conn.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.task,
            OutboxMessage.payload,
            OutboxMessage.created_at,
            OutboxMessage.dead_at,
            OutboxMessage.publish_count,
            OutboxMessage.last_error,
        )
        .where(OutboxMessage.dead_at.is_not(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    return [
        DeadLetter(
            row.id,
            row.task,
            row.payload,
            row.created_at,
            row.dead_at,
            row.publish_count,
            row.last_error,
        )
        for row in rows
    ]


def retry_dead(conn: Connection, ids: Sequence[int] | None) -> list[int]:
    """Put dead letters (``ids``, or all when None) back in line for the relay."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.dead_at.is_not(None))
        .values(dead_at=None, published_at=None)
        .returning(OutboxMessage.id, OutboxMessage.payload)
    )
    if ids is not None:
        statement = statement.where(OutboxMessage.id.in_(ids))
    rows = conn.execute(statement).all()
    order_ids = [row.payload["order_id"] for row in rows if "order_id" in row.payload]
    if order_ids:
        conn.execute(
            update(Order)
            .where(Order.id.in_(order_ids), Order.confirmation_status == ConfirmationStatus.FAILED)
            .values(confirmation_status=ConfirmationStatus.PENDING)
        )
    notify(conn)
    return [row.id for row in rows]


def notify(conn: Connection) -> None:
    """Wake the relays at commit (inserts notify by trigger; this is for updates)."""
    conn.execute(select(func.pg_notify(OUTBOX_CHANNEL, "")))


def backlog(conn: Connection) -> Backlog:
    row = conn.execute(
        text(
            "SELECT count(*) AS n,"
            " coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age"
            " FROM outbox WHERE published_at IS NULL"
        )
    ).one()
    return Backlog(unpublished=int(row.n), oldest_age_s=float(row.age))
