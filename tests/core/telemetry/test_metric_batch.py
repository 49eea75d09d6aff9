"""MetricBatch writes exactly what per-event calls would have written."""

from __future__ import annotations

import random

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from services.core.cache import CacheCounters
from services.core.telemetry.metric_batch import MetricBatch
from services.core.telemetry.prometheus import LATENCY_BUCKETS


def exposition(registry: CollectorRegistry, prefix: str) -> dict[tuple[str, str], float]:
    """Samples by (suffix, le) with the metric's own prefix removed, so two metrics with
    different names compare equal when their values are."""
    return {
        (sample.name.removeprefix(prefix), sample.labels.get("le", "")): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith(prefix) and not sample.name.endswith("_created")
    }


def test_batched_histogram_counter_and_gauge_equal_per_event_calls() -> None:
    registry = CollectorRegistry()
    direct_h = Histogram("direct_h", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    batched_h = Histogram("batched_h", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    direct_c = Counter("direct_c", "c", ["route"], registry=registry)
    batched_c = Counter("batched_c", "c", ["route"], registry=registry)
    batched_g = Gauge("batched_g", "g", registry=registry)
    batch = MetricBatch()
    batch.track(batched_g, lambda: 7)

    rng = random.Random(42)
    # Every bucket, exact bucket bounds (le is inclusive) and past the last bound (+Inf).
    values = [*LATENCY_BUCKETS, 0.0, 99.0] + [rng.expovariate(20) for _ in range(5000)]
    for round_ in range(2):  # a second flush adds to the first
        for value in values:
            direct_h.labels("/a").observe(value)
            batch.histogram(batched_h.labels("/a")).observe(value)
            direct_c.labels("/a").inc()
            batch.counter(batched_c.labels("/a")).inc()
        assert registry.get_sample_value("batched_c_total", {"route": "/a"}) == len(values) * round_
        batch.flush()
        direct, batched = exposition(registry, "direct_"), exposition(registry, "batched_")
        assert batched.pop(("g", "")) == 7
        direct_sum, batched_sum = direct.pop(("h_sum", "")), batched.pop(("h_sum", ""))
        assert batched == direct
        assert batched_sum == pytest.approx(direct_sum)
        assert batched[("h_count", "")] == len(values) * (round_ + 1)


def test_an_empty_flush_writes_nothing() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", registry=registry)
    batch = MetricBatch()
    batch.flush()
    batch.counter(counter).inc(3)
    batch.flush()
    batch.flush()
    assert registry.get_sample_value("c_total") == 3


def test_cache_counters_export_what_they_counted_since_the_last_flush() -> None:
    labels = {"route": "/test-export", "tier": "l1"}

    def exported() -> float:
        return REGISTRY.get_sample_value("stampede_cache_hits_total", labels) or 0.0

    batch = MetricBatch()
    counters = CacheCounters(batch)
    before = exported()
    counters.hit("/test-export", "l1")
    counters.hit("/test-export", "l1")
    assert exported() == before
    batch.flush()
    assert exported() == before + 2
    counters.hit("/test-export", "l1")
    batch.flush()
    batch.flush()
    assert exported() == before + 3
    assert counters.counts["hit", "/test-export", "l1"] == 3
