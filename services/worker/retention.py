"""Deleting what has served its purpose: finished outbox rows and old idempotency keys.

Both tables grow with every order. The relay sweeps them now and then, a batch per
transaction: each delete locks at most ``batch_size`` rows (``SKIP LOCKED`` passes over
rows another transaction holds, and lets several relays sweep side by side), so a sweep
never blocks orders or the relay's own publishing for long. Dead letters, unpublished and
unfinished rows are never deleted: they are work not done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Delete, Engine, delete, func, select

from services.core.models import IdempotencyKey, OutboxMessage

# Batches per table per sweep: a large backlog (the first sweep after an upgrade) is
# worked off over several sweeps instead of holding up the relay's loop.
MAX_BATCHES = 20


@dataclass(frozen=True, slots=True)
class Swept:
    outbox_rows: int
    idempotency_keys: int


def _older_than(seconds: int) -> ColumnElement[datetime]:
    return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def _repeat(engine: Engine, statement: Delete, batch_size: int) -> int:
    """Run the batch delete, one transaction each, until a batch comes back short."""
    deleted = 0
    for _ in range(MAX_BATCHES):
        with engine.begin() as conn:
            count = conn.execute(statement).rowcount
        deleted += count
        if count < batch_size:
            break
    return deleted


def sweep(
    engine: Engine, *, outbox_retention_s: int, idempotency_key_retention_s: int, batch_size: int
) -> Swept:
    finished = (
        select(OutboxMessage.id)
        .where(OutboxMessage.done_at < _older_than(outbox_retention_s))
        .order_by(OutboxMessage.done_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    expired_keys = (
        select(IdempotencyKey.key)
        .where(IdempotencyKey.created_at < _older_than(idempotency_key_retention_s))
        .order_by(IdempotencyKey.created_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return Swept(
        outbox_rows=_repeat(
            engine, delete(OutboxMessage).where(OutboxMessage.id.in_(finished)), batch_size
        ),
        idempotency_keys=_repeat(
            engine, delete(IdempotencyKey).where(IdempotencyKey.key.in_(expired_keys)), batch_size
        ),
    )
