"""Stampede / API by route: which route is slow, failing or busy?"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from devstack.release.dashboards.shared import Section, board, quantile, timeseries_panel


def build() -> Dashboard:
    return board(
        "api",
        "Stampede / API by route",
        "Which route is slow, failing or busy? Every series is labelled by route template.",
        [Section("Per route", _per_route()), Section("Rate limits", _rate_limits())],
    )


def _per_route() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Requests / s by route",
            "Request rate per route template.",
            unit="reqps",
            span=12,
            queries={
                "{{method}} {{route}}": (
                    "sum by (method, route)"
                    " (rate(stampede_http_requests_total{$scope}[$__rate_interval]))"
                ),
            },
        ),
        timeseries_panel(
            "Errors / s by route",
            "4xx and 5xx answers per route (4xx: client mistakes; 5xx: ours).",
            unit="reqps",
            span=12,
            queries={
                "{{route}} {{status_class}}": (
                    "sum by (route, status_class) (rate(stampede_http_requests_total"
                    '{$scope, status_class=~"4xx|5xx"}[$__rate_interval]))'
                ),
            },
        ),
        timeseries_panel(
            "p99 latency by route",
            "99th percentile duration per route; the dashed line is the 100 ms objective.",
            unit="s",
            span=12,
            queries={
                "{{route}}": quantile(0.99, "stampede_http_request_duration_seconds", "le, route")
            },
            thresholds={"red": 0.1},
        ),
        timeseries_panel(
            "p50 latency by route",
            "Median duration per route.",
            unit="s",
            span=12,
            queries={
                "{{route}}": quantile(0.5, "stampede_http_request_duration_seconds", "le, route")
            },
        ),
        timeseries_panel(
            "Response size p95 by route",
            "95th percentile response body size (after compression).",
            unit="bytes",
            span=12,
            queries={"{{route}}": quantile(0.95, "stampede_http_response_size_bytes", "le, route")},
        ),
        timeseries_panel(
            "Share of time by route",
            "Total time spent serving each route: where optimisation pays most.",
            unit="s",
            span=12,
            queries={
                "{{route}}": (
                    "sum by (route)"
                    " (rate(stampede_http_request_duration_seconds_sum{$scope}[$__rate_interval]))"
                ),
            },
            stacked=True,
        ),
    ]


def _rate_limits() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Rate-limit decisions / s",
            "Requests admitted and refused (429) per policy: `key` per API key, `ip` per"
            " client address. Refusals rising for one policy: a client over its limit, or"
            " a limit set too low.",
            unit="reqps",
            span=24,
            queries={
                "{{policy}} {{outcome}}": (
                    "sum by (policy, outcome)"
                    " (rate(stampede_rate_limit_decisions_total{$scope}[$__rate_interval]))"
                ),
            },
        ),
    ]
