"""Hooks for cache metrics, labelled by route template.

The cache reports through this small interface; the observability issue plugs a
Prometheus implementation in. :class:`CacheCounters` is the default: plain counters,
also what the tests read.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, Protocol

Tier = Literal["l1", "l2"]


class CacheMetrics(Protocol):
    def hit(self, route: str, tier: Tier) -> None: ...
    def miss(self, route: str) -> None: ...
    def stale(self, route: str) -> None: ...
    def error(self, operation: str) -> None: ...
    def l1_eviction(self, route: str) -> None: ...


class CacheCounters:
    """In-process counters: ``counts[("hit", "/products", "l1")]`` and so on."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, ...]] = Counter()

    def hit(self, route: str, tier: Tier) -> None:
        self.counts["hit", route, tier] += 1

    def miss(self, route: str) -> None:
        self.counts["miss", route] += 1

    def stale(self, route: str) -> None:
        self.counts["stale", route] += 1

    def error(self, operation: str) -> None:
        self.counts["error", operation] += 1

    def l1_eviction(self, route: str) -> None:
        self.counts["l1_eviction", route] += 1
