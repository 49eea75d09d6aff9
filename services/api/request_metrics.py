"""The api's metric definitions. Labels are bounded: route *templates*, status classes,
a fixed set of methods — a client can never mint a new series."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.core.telemetry.metric_batch import CounterTally, HistogramTally, MetricBatch
from services.core.telemetry.prometheus import LATENCY_BUCKETS

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "stampede_http_requests",
    "HTTP requests answered, by route template and status class.",
    ["method", "route", "status_class"],
)
LATENCY = Histogram(
    "stampede_http_request_duration_seconds",
    "Time from request to the end of the response body.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "stampede_http_requests_in_flight",
    "Requests being handled right now, over all worker processes.",
    multiprocess_mode="livesum",
)
RESPONSE_SIZE = Histogram(
    "stampede_http_response_size_bytes",
    "Response body size.",
    ["route"],
    buckets=(128, 512, 1024, 4096, 16384, 65536, 262144, 1048576),
)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


class RequestMetrics:
    """What the observation middleware records per request, into the process's
    :class:`MetricBatch` (the in-flight count is sampled at each flush).

    Each kind of request (method label, route template, status class) gets its three
    tallies once; after that, recording is one dict lookup and three additions."""

    def __init__(self, batch: MetricBatch) -> None:
        self.batch = batch
        self.in_flight = 0
        self._series: dict[
            tuple[str, str, int], tuple[CounterTally, HistogramTally, HistogramTally]
        ] = {}
        batch.track(IN_FLIGHT, lambda: self.in_flight)

    def record(self, method: str, route: str, status: int, seconds: float, size: int) -> None:
        # Labels stay bounded: unknown methods are one label, statuses are classes.
        key = (method_label(method), route, status // 100)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._tallies(*key)
        requests, latency, response_size = series
        requests.inc()
        latency.observe(seconds)
        response_size.observe(size)

    def _tallies(
        self, method: str, route: str, status_class: int
    ) -> tuple[CounterTally, HistogramTally, HistogramTally]:
        return (
            self.batch.counter(REQUESTS.labels(method, route, f"{status_class}xx")),
            self.batch.histogram(LATENCY.labels(method, route)),
            self.batch.histogram(RESPONSE_SIZE.labels(route)),
        )
