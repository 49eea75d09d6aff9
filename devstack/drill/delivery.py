"""What became of the drill's orders: stored or lost, and how many emails each got.

Orders are looked up straight in Postgres by the idempotency keys the clients sent (so
an order committed but never acknowledged is seen too); emails are counted in the mail
sink's folder, by the order number in their subject, among the files written since the
drill began.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

import asyncpg

from devstack import stack

_SUBJECT = re.compile(r"#(\d+)\b")


@dataclass(frozen=True, slots=True)
class Stored:
    """The orders the drill's keys created, and whether their confirmations settled."""

    by_key: dict[str, int]
    pending: int


async def stored_orders(keys: list[str]) -> Stored:
    conn = await asyncpg.connect(stack.postgres_dsn(stack.POSTGRES_PORT))
    try:
        rows = await conn.fetch(
            "SELECT k.key, k.order_id, o.confirmation_status::text AS confirmation"
            " FROM idempotency_keys k JOIN orders o ON o.id = k.order_id"
            " WHERE k.key = ANY($1::text[])",
            keys,
        )
    finally:
        await conn.close()
    pending = sum(1 for row in rows if row["confirmation"] == "pending")
    return Stored({row["key"]: row["order_id"] for row in rows}, pending)


async def wait_for_confirmations(keys: list[str], within_s: float) -> tuple[Stored, float]:
    """Wait until no order of ``keys`` still waits for its confirmation (sent or given
    up); return what is stored and how long the pipeline took to drain."""
    began = time.monotonic()
    while True:
        stored = await stored_orders(keys)
        if stored.pending == 0 or time.monotonic() - began > within_s:
            return stored, time.monotonic() - began
        await asyncio.sleep(0.5)


def emails_per_order(since: float, mail_dir: Path = stack.MAIL_DIR) -> Counter[int]:
    """How many emails each order number got, among files written since ``since``
    (a wall-clock timestamp)."""
    parser = BytesHeaderParser()
    counts: Counter[int] = Counter()
    for path in mail_dir.glob("*.eml"):
        if path.stat().st_mtime < since:
            continue
        with path.open("rb") as file:
            subject = parser.parse(file).get("Subject", "")
        match = _SUBJECT.search(subject)
        if match:
            counts[int(match.group(1))] += 1
    return counts
