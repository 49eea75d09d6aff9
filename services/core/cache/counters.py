"""Cache metrics, labelled by route template (bounded) or Redis operation.

The cache reports through the small :class:`CacheMetrics` interface. :class:`CacheCounters`
exports each event to Prometheus (``stampede_cache_*``, multiprocess-safe like the
api's other metrics) and also keeps this process's own tallies, which tests read.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Literal, Protocol

from prometheus_client import Counter as PromCounter

from services.core.telemetry.metric_batch import MetricBatch

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
    """In-process tallies (``counts[("hit", "/products", "l1")]``, which tests read),
    exported to Prometheus as deltas when the process's :class:`MetricBatch` flushes: a
    hit is on the hot path, and one dict increment is all it costs there."""

    def __init__(self, batch: MetricBatch) -> None:
        self.counts: Counter[tuple[str, ...]] = Counter()
        self._exported: Counter[tuple[str, ...]] = Counter()
        batch.on_flush(self._export)

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

    def _export(self) -> None:
        for key, total in list(self.counts.items()):
            delta = total - self._exported[key]
            if delta:
                kind, *labels = key
                _child(_PROMETHEUS[kind], tuple(labels)).inc(delta)
                self._exported[key] = total


_PROMETHEUS = {
    "hit": HITS,
    "miss": MISSES,
    "stale": STALE,
    "error": ERRORS,
    "l1_eviction": L1_EVICTIONS,
}


@functools.cache
def _child(counter: PromCounter, labels: tuple[str, ...]) -> PromCounter:
    # Labels are bounded (route templates, tiers, operation names): look each child up
    # once; ``labels()`` takes a lock and builds a key on every call.
    return counter.labels(*labels)
