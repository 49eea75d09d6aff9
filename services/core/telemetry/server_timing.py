"""Per-request timing for the ``Server-Timing`` response header.

The api's metrics middleware opens a ``Timing`` for each request; the database engine's
cursor events add to whichever one is current. Browsers' dev tools and curl show where
a request's time went without any ad-hoc header.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@dataclass(slots=True)
class Timing:
    db_seconds: float = 0.0
    db_statements: int = 0
    # Start times of statements in flight; made on the first statement (a cached hit
    # has none, and this object is built for every request).
    _pending: list[float] | None = None

    def header(self, *, total_ms: float) -> str:
        if not self.db_statements:
            return f"app;dur={total_ms:.1f}"
        return (
            f"app;dur={total_ms:.1f}, "
            f'db;dur={self.db_seconds * 1000:.1f};desc="{self.db_statements} statements"'
        )


class RequestTiming:
    def __init__(self) -> None:
        self._current: ContextVar[Timing | None] = ContextVar("request_timing", default=None)

    def start(self) -> Timing:
        timing = Timing()
        self._current.set(timing)
        return timing

    def stop(self, timing: Timing) -> None:
        if self._current.get() is timing:
            self._current.set(None)

    def current(self) -> Timing | None:
        return self._current.get()


request_timing = RequestTiming()


def time_statements(engine: Engine) -> None:
    """Add every statement's duration to the current request's ``Timing``."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(*_: Any) -> None:
        timing = request_timing.current()
        if timing is not None:
            if timing._pending is None:
                timing._pending = []
            timing._pending.append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(*_: Any) -> None:
        timing = request_timing.current()
        if timing is not None and timing._pending:
            timing.db_seconds += time.perf_counter() - timing._pending.pop()
            timing.db_statements += 1
