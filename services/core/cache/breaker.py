"""A circuit breaker for the cache Redis.

Hand-written: pybreaker and aiobreaker wrap calls (and pybreaker's async support needs
Tornado); this one is three methods the hot path calls synchronously, without a lock,
since each process runs one event loop.

closed --(``failures`` in a row)--> open --(``reset_s``)--> half-open: one trial call;
its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self, *, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.reset_s:
            return "open"
        return "half-open"

    def allow(self) -> bool:
        """Whether to try Redis now. In half-open, only one caller gets a yes."""
        if self._opened_at is None:
            return True
        if self._clock() - self._opened_at < self.reset_s or self._trial_running:
            return False
        self._trial_running = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failure(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.threshold:
            self._opened_at = self._clock()
