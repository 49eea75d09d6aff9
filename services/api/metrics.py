"""The api's metric definitions. Labels are bounded: route *templates*, status classes,
a fixed set of methods — a client can never mint a new series."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

from services.core.metric_batch import MetricBatch
from services.core.metrics import LATENCY_BUCKETS

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


@functools.cache
def request_series(
    method: str, route: str, status_class: str
) -> tuple[Counter, Histogram, Histogram]:
    """The labelled children for one kind of request, looked up once per process: the
    label sets are bounded, and ``labels()`` takes a lock and builds a key every call."""
    return (
        REQUESTS.labels(method, route, status_class),
        LATENCY.labels(method, route),
        RESPONSE_SIZE.labels(route),
    )


class RequestMetrics:
    """What the observation middleware records per request, through the process's
    :class:`MetricBatch` (the in-flight count is sampled at each flush)."""

    def __init__(self, batch: MetricBatch) -> None:
        self.batch = batch
        self.in_flight = 0
        batch.track(IN_FLIGHT, lambda: self.in_flight)

    def record(self, method: str, route: str, status: int, seconds: float, size: int) -> None:
        requests, latency, response_size = request_series(
            method_label(method), route, f"{status // 100}xx"
        )
        batch = self.batch
        batch.inc(requests)
        batch.observe(latency, seconds)
        batch.observe(response_size, size)
