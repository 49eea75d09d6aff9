"""Connection-pool metrics for an engine: how full the pool is and how long requests
wait for a connection — the first place a PgBouncer or Postgres bottleneck shows."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from services.core.errors import Unavailable

CHECKED_OUT = Gauge(
    "stampede_db_pool_checked_out",
    "Connections checked out of the app's pools, over all processes.",
    multiprocess_mode="livesum",
)
CAPACITY = Gauge(
    "stampede_db_pool_capacity",
    "pool_size + max_overflow, over all live processes.",
    multiprocess_mode="livesum",
)
OVERFLOW = Gauge(
    "stampede_db_pool_overflow",
    "Connections open beyond pool_size, over all processes.",
    multiprocess_mode="livesum",
)
ACQUIRE_SECONDS = Histogram(
    "stampede_db_pool_acquire_seconds",
    "Time a request waited for a pooled connection.",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ACQUIRE_TIMEOUTS = Counter(
    "stampede_db_pool_timeouts",
    "Requests that gave up waiting for a pooled connection.",
)


def instrument_pool(engine: AsyncEngine, *, capacity: int) -> None:
    pool = engine.sync_engine.pool
    CAPACITY.inc(capacity)

    def overflow() -> int:
        # Only queue pools (the engine's default) overflow; negative means "not yet full".
        return max(pool.overflow(), 0) if isinstance(pool, QueuePool) else 0

    @event.listens_for(pool, "checkout")
    def _checkout(*_: Any) -> None:
        CHECKED_OUT.inc()
        OVERFLOW.set(overflow())

    @event.listens_for(pool, "checkin")
    def _checkin(*_: Any) -> None:
        CHECKED_OUT.dec()
        OVERFLOW.set(overflow())


def forget_pool(*, capacity: int) -> None:
    """At engine disposal: this process no longer offers that capacity."""
    CAPACITY.dec(capacity)


async def check_out(checking_out: Awaitable[object]) -> None:
    """Await ``checking_out`` (a session's or a connection's first checkout), timing the
    wait for a pooled connection.

    An exhausted pool is a temporary condition of this process, not a bug: it becomes
    ``Unavailable`` (503, retry) instead of an unhandled 500.
    """
    started = time.perf_counter()
    try:
        await checking_out
    except PoolTimeout:
        ACQUIRE_TIMEOUTS.inc()
        raise Unavailable("No database connection became free in time; retry.") from None
    finally:
        ACQUIRE_SECONDS.observe(time.perf_counter() - started)
