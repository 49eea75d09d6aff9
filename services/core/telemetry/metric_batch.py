"""A per-process buffer in front of prometheus_client's multiprocess storage.

In multiprocess mode every ``inc()`` or ``observe()`` takes a lock and writes a page of
a memory-mapped file. A cached hit made eight such writes, which cost more than the
cache lookup itself (docs/benchmarks.md has the figures). Here the request
path only adds to plain Python tallies (a dict lookup and an addition; the event loop
runs one callback at a time, so no lock), and :meth:`MetricBatch.flush` writes them out
— every second from the api's lifespan, and once more at shutdown. Prometheus scrapes
every 15-30 s, so the second of delay is invisible; a worker killed with SIGKILL loses
at most that second of its counts, as it loses its in-flight requests.

Values are exactly what per-event calls would have recorded: counters get the summed
increment, histograms the per-bucket counts and the summed observations.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram


class CounterTally:
    """Pending increments of one counter child."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.pending += amount


class HistogramTally:
    """Pending observations of one histogram child, per bucket."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # The first bucket whose bound is >= value: prometheus_client's ``value <= bound``.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class MetricBatch:
    """Hot code asks once for a child's tally (:meth:`counter`, :meth:`histogram`) and
    keeps it; gauges are read at flush (:meth:`track`)."""

    def __init__(self) -> None:
        self._counters: dict[Counter, CounterTally] = {}
        self._histograms: dict[Histogram, HistogramTally] = {}
        self._tracked: list[tuple[Gauge, Callable[[], float]]] = []
        self._exports: list[Callable[[], None]] = []

    def counter(self, counter: Counter) -> CounterTally:
        """``counter``: a labelled child (``COUNTER.labels(...)``), or an unlabelled one."""
        tally = self._counters.get(counter)
        if tally is None:
            tally = self._counters[counter] = CounterTally()
        return tally

    def histogram(self, histogram: Histogram) -> HistogramTally:
        tally = self._histograms.get(histogram)
        if tally is None:
            tally = self._histograms[histogram] = HistogramTally(_upper_bounds(histogram))
        return tally

    def track(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Set ``gauge`` to ``read()`` at every flush (a gauge is a sample anyway)."""
        self._tracked.append((gauge, read))

    def on_flush(self, export: Callable[[], None]) -> None:
        """Call ``export`` at every flush (for tallies kept elsewhere)."""
        self._exports.append(export)

    def flush(self) -> None:
        for export in self._exports:
            export()
        for counter, counted in self._counters.items():
            if counted.pending:
                amount, counted.pending = counted.pending, 0.0
                counter.inc(amount)
        for histogram, observed in self._histograms.items():
            if any(observed.counts):
                _add_observations(histogram, observed.counts, observed.total)
                observed.counts = [0] * len(observed.counts)
                observed.total = 0.0
        for gauge, read in self._tracked:
            gauge.set(read())


# prometheus_client has no public "observe n values at once" (its histogram records one
# observation per call); these two functions are the only code that knows its child's
# layout: ``_upper_bounds`` (ending in +Inf), one value per bucket in ``_buckets`` (not
# cumulative) and ``_sum``. tests/core/telemetry/test_metric_batch.py compares the result with
# per-event ``observe()`` calls, so an upgrade that changes the layout fails there.
def _upper_bounds(histogram: Histogram) -> list[float]:
    return list(histogram._upper_bounds)


def _add_observations(histogram: Histogram, counts: list[int], total: float) -> None:
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
