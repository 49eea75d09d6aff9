"""Stampede / Overview: is the stack healthy?"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from devstack.release.dashboards.shared import (
    Section,
    board,
    quantile,
    stat_panel,
    timeseries_panel,
)

REQUEST_DURATION = "stampede_http_request_duration_seconds"


def build() -> Dashboard:
    return board(
        "overview",
        "Stampede / Overview",
        "Is the stack healthy? Traffic, errors, latency against the 100 ms objective, saturation.",
        [
            Section("Golden signals", _golden_signals()),
            Section("Saturation", _saturation()),
        ],
    )


def _golden_signals() -> list[Builder[Panel]]:
    return [
        stat_panel(
            "Requests / s",
            "All api requests answered per second.",
            unit="reqps",
            span=6,
            queries={"req/s": "sum(rate(stampede_http_requests_total{$scope}[$__rate_interval]))"},
        ),
        stat_panel(
            "5xx ratio",
            "Share of requests answered with a server error. Alert: > 5% for 5 min.",
            unit="percentunit",
            span=6,
            queries={
                # No 5xx series exists until the first one: zero, not an empty ratio.
                "5xx": (
                    "(sum(rate(stampede_http_requests_total"
                    '{$scope, status_class="5xx"}[$__rate_interval])) or vector(0))'
                    " / sum(rate(stampede_http_requests_total{$scope}[$__rate_interval]))"
                ),
            },
            thresholds={"orange": 0.01, "red": 0.05},
        ).decimals(2),
        stat_panel(
            "p99 latency",
            "99th percentile request duration. Objective: 99% under 100 ms.",
            unit="s",
            span=6,
            queries={"p99": quantile(0.99, REQUEST_DURATION)},
            thresholds={"orange": 0.075, "red": 0.1},
        ),
        stat_panel(
            "Targets up",
            "Scrape targets of this release answering (api, pgbouncer, redis, postgres, worker).",
            unit="short",
            span=6,
            queries={"up": "sum(up{$scope})", "total": "count(up{$scope})"},
        ),
        timeseries_panel(
            "Traffic by status class",
            "Requests per second, split by 2xx/3xx/4xx/5xx.",
            unit="reqps",
            span=12,
            queries={
                "{{status_class}}": (
                    "sum by (status_class)"
                    " (rate(stampede_http_requests_total{$scope}[$__rate_interval]))"
                ),
            },
            stacked=True,
        ),
        timeseries_panel(
            "Latency p50 / p95 / p99",
            "Request duration percentiles over all routes; the dashed line is the 100 ms "
            "objective.",
            unit="s",
            span=12,
            queries={
                "p50": quantile(0.5, REQUEST_DURATION),
                "p95": quantile(0.95, REQUEST_DURATION),
                "p99": quantile(0.99, REQUEST_DURATION),
            },
            thresholds={"red": 0.1},
        ),
        timeseries_panel(
            "Latency objective: slow requests",
            "Share of requests slower than 100 ms (objective: at most 1%).",
            unit="percentunit",
            span=12,
            queries={
                "slow share": (
                    "1 - sum(rate(stampede_http_request_duration_seconds_bucket"
                    '{$scope, le="0.1"}[$__rate_interval]))'
                    " / sum(rate(stampede_http_request_duration_seconds_count"
                    "{$scope}[$__rate_interval]))"
                ),
            },
            thresholds={"red": 0.01},
        ).min(0),
    ]


def _saturation() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Requests in flight",
            "Requests being handled right now, over all api workers.",
            unit="short",
            span=8,
            queries={"in flight": "sum(stampede_http_requests_in_flight{$scope})"},
        ),
        timeseries_panel(
            "DB pool use",
            "Connections checked out of the app pools, as a share of their capacity "
            "(pool_size + max_overflow).",
            unit="percentunit",
            span=8,
            queries={
                "pool use": (
                    "sum(stampede_db_pool_checked_out{$scope})"
                    " / sum(stampede_db_pool_capacity{$scope})"
                ),
            },
            thresholds={"orange": 0.8, "red": 0.95},
        )
        .min(0)
        .max(1),
        timeseries_panel(
            "PgBouncer clients waiting",
            "Clients queued for a Postgres server connection; anything above 0 for long means "
            "the pool is too small.",
            unit="short",
            span=8,
            queries={"waiting": "sum(pgbouncer_pools_client_waiting_connections{$scope})"},
            thresholds={"red": 1},
        ),
    ]
