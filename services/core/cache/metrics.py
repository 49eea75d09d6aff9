"""Cache metrics, labelled by route template (bounded) or Redis operation.

The cache reports through the small :class:`CacheMetrics` interface. :class:`CacheCounters`
exports each event to Prometheus (``stampede_cache_*``, multiprocess-safe like the
api's other metrics) and also keeps this process's own tallies, which tests read.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, Protocol

from prometheus_client import Counter as PromCounter

Tier = Literal["l1", "l2"]

HITS = PromCounter("stampede_cache_hits", "Responses served from the cache.", ["route", "tier"])
MISSES = PromCounter(
    "stampede_cache_misses", "Requests that ran the route and stored its response.", ["route"]
)
STALE = PromCounter(
    "stampede_cache_stale", "Expired entries served while one request recomputes.", ["route"]
)
ERRORS = PromCounter(
    "stampede_cache_errors",
    "Cache Redis operations that failed or timed out (the request went on without).",
    ["operation"],
)
L1_EVICTIONS = PromCounter(
    "stampede_cache_l1_evictions", "Entries pushed out of the bounded in-process tier.", ["route"]
)


class CacheMetrics(Protocol):
    def hit(self, route: str, tier: Tier) -> None: ...
    def miss(self, route: str) -> None: ...
    def stale(self, route: str) -> None: ...
    def error(self, operation: str) -> None: ...
    def l1_eviction(self, route: str) -> None: ...


class CacheCounters:
    """Prometheus counters plus in-process tallies: ``counts[("hit", "/products", "l1")]``."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, ...]] = Counter()

    def hit(self, route: str, tier: Tier) -> None:
        self.counts["hit", route, tier] += 1
        HITS.labels(route, tier).inc()

    def miss(self, route: str) -> None:
        self.counts["miss", route] += 1
        MISSES.labels(route).inc()

    def stale(self, route: str) -> None:
        self.counts["stale", route] += 1
        STALE.labels(route).inc()

    def error(self, operation: str) -> None:
        self.counts["error", operation] += 1
        ERRORS.labels(operation).inc()

    def l1_eviction(self, route: str) -> None:
        self.counts["l1_eviction", route] += 1
        L1_EVICTIONS.labels(route).inc()
