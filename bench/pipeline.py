"""The local stack's database and order pipeline, as the write scenarios need them: the
shop's size, the confirmations still to send, and a pause for the outbox relay while a
floor writes orders that are not the pipeline's to send."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from bench.workload import Shop
from devstack.stack import POSTGRES_PORT, postgres_dsn, supervisor

DIRECT_DSN = postgres_dsn(POSTGRES_PORT)
POLL_S = 0.5


def _value(sql: str, *parameters: object) -> int:
    with psycopg.connect(DIRECT_DSN, autocommit=True) as connection:
        row = connection.execute(sql, parameters).fetchone()
    assert row is not None
    return int(row[0])


def shop() -> Shop:
    return Shop(
        users=_value("SELECT coalesce(max(id), 0) FROM users"),
        products=_value("SELECT coalesce(max(id), 0) FROM products"),
    )


def last_order_id() -> int:
    return _value("SELECT coalesce(max(id), 0) FROM orders")


def pending_confirmations(after_order_id: int) -> int:
    """Orders newer than ``after_order_id`` whose confirmation is not sent yet."""
    return _value(
        "SELECT count(*) FROM orders WHERE id > %s AND confirmation_status = 'pending'",
        after_order_id,
    )


@dataclass(frozen=True)
class Drain:
    """How the pipeline caught up once the load stopped."""

    pending_at_stop: int
    # The most seen at once: requests still in flight when the load stopped add theirs.
    peak: int
    left: int  # still pending when the wait ended
    seconds: float  # until none was left, or the whole wait if some were

    @property
    def drained(self) -> bool:
        return self.left == 0

    @property
    def rate(self) -> float:
        """Confirmations sent per second while draining."""
        sent = self.peak - self.left
        return sent / self.seconds if self.seconds else 0.0


def wait_for_drain(after_order_id: int, limit_s: float) -> Drain:
    """Poll until every confirmation of the orders after ``after_order_id`` is sent (or
    failed), for at most ``limit_s``."""
    started = time.monotonic()
    pending_at_stop = peak = left = pending_confirmations(after_order_id)
    while left and time.monotonic() - started < limit_s:
        time.sleep(POLL_S)
        left = pending_confirmations(after_order_id)
        peak = max(peak, left)
    return Drain(pending_at_stop, peak, left, time.monotonic() - started)


@contextmanager
def relay_paused() -> Iterator[None]:
    """The outbox relay stopped; on exit the orders and outbox rows written meanwhile are
    deleted (their items and idempotency keys with them), and the relay started again.

    A floor's orders are the floor's measurement only: left in, the worker would spend
    the next scenarios' CPU sending their confirmations.
    """
    orders_before = last_order_id()
    outbox_before = _value("SELECT coalesce(max(id), 0) FROM outbox")
    supervisor.stop("relay")
    try:
        yield
    finally:
        with psycopg.connect(DIRECT_DSN, autocommit=True) as connection:
            connection.execute("DELETE FROM outbox WHERE id > %s", (outbox_before,))
            connection.execute("DELETE FROM orders WHERE id > %s", (orders_before,))
        supervisor.ensure_started("relay")
