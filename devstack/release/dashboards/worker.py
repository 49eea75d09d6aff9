"""Stampede / Worker & queue: is background work keeping up?"""

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

TASK_RUNTIME = "stampede_worker_task_runtime_seconds"
QUEUE_WAIT = "stampede_worker_queue_wait_seconds"


def build() -> Dashboard:
    return board(
        "worker",
        "Stampede / Worker & queue",
        "Is background work keeping up? Outbox, broker queue, task outcomes and timings.",
        [
            Section("Keeping up", _keeping_up()),
            Section("Tasks", _tasks()),
            Section("Broker Redis", _broker_redis()),
        ],
    )


def _keeping_up() -> list[Builder[Panel]]:
    return [
        stat_panel(
            "Workers up",
            "Celery worker processes answering scrapes.",
            unit="short",
            span=4,
            queries={"workers": 'sum(up{$scope, component="worker"})'},
        ),
        stat_panel(
            "Relays up",
            "Outbox relays answering scrapes.",
            unit="short",
            span=4,
            queries={"relays": 'sum(up{$scope, component="relay"})'},
        ),
        stat_panel(
            "Queue length",
            "Messages waiting in the broker queue (not yet taken by a worker).",
            unit="short",
            span=4,
            queries={"queued": "max(stampede_worker_queue_length{$scope})"},
            thresholds={"orange": 100, "red": 1000},
        ),
        stat_panel(
            "Outbox backlog",
            "Committed outbox rows the relay has not published yet.",
            unit="short",
            span=6,
            queries={"unpublished": "max(stampede_outbox_unpublished{$scope})"},
            thresholds={"orange": 100, "red": 1000},
        ),
        stat_panel(
            "Outbox lag",
            "Age of the oldest unpublished outbox row. Alert: > 60 s for 5 min.",
            unit="s",
            span=6,
            queries={"oldest": "max(stampede_outbox_oldest_unpublished_age_seconds{$scope})"},
            thresholds={"orange": 10, "red": 60},
        ),
        timeseries_panel(
            "Published vs taken / s",
            "Tasks the relay published and tasks workers took from the broker: they should "
            "track each other.",
            unit="ops",
            span=12,
            queries={
                "published": "sum(rate(stampede_outbox_published_total{$scope}[$__rate_interval]))",
                "taken by workers": (
                    "sum(rate(stampede_worker_tasks_received_total{$scope}[$__rate_interval]))"
                ),
            },
        ),
        timeseries_panel(
            "Queue and backlog",
            "Broker queue length and outbox backlog over time; growth means workers or the "
            "relay fall behind.",
            unit="short",
            span=12,
            queries={
                "queue": "max(stampede_worker_queue_length{$scope})",
                "outbox backlog": "max(stampede_outbox_unpublished{$scope})",
            },
        ),
    ]


def _tasks() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Task outcomes / s",
            "Task runs by final state: success, retry (transient failure, e.g. SMTP down) and "
            "failure (dead-lettered).",
            unit="ops",
            span=12,
            queries={
                "{{state}}": (
                    "sum by (state) (rate(stampede_worker_tasks_total{$scope}[$__rate_interval]))"
                ),
            },
            stacked=True,
        ),
        timeseries_panel(
            "Failure share",
            "Share of task runs that retried or failed.",
            unit="percentunit",
            span=12,
            queries={
                # No retry or failure series exists until the first one: zero, not an empty ratio.
                "retry + failure": (
                    "(sum(rate(stampede_worker_tasks_total"
                    '{$scope, state=~"retry|failure"}[$__rate_interval])) or vector(0))'
                    " / sum(rate(stampede_worker_tasks_total{$scope}[$__rate_interval]))"
                ),
            },
            thresholds={"orange": 0.05, "red": 0.2},
        ).min(0),
        timeseries_panel(
            "Task runtime p50 / p95 / p99",
            "How long a task runs (the email send included).",
            unit="s",
            span=12,
            queries={
                "p50": quantile(0.5, TASK_RUNTIME),
                "p95": quantile(0.95, TASK_RUNTIME),
                "p99": quantile(0.99, TASK_RUNTIME),
            },
        ),
        timeseries_panel(
            "Queue wait p50 / p95",
            "From the relay publishing a task to a worker starting it (first runs only).",
            unit="s",
            span=12,
            queries={"p50": quantile(0.5, QUEUE_WAIT), "p95": quantile(0.95, QUEUE_WAIT)},
        ),
        timeseries_panel(
            "Republished by the sweep",
            "Published rows whose task never finished, handed back to the relay (a lost "
            "message or a killed task).",
            unit="short",
            span=12,
            queries={
                "republished": (
                    "sum(increase(stampede_outbox_republished_total{$scope}[$__rate_interval]))"
                ),
            },
            thresholds={"orange": 1},
        ),
    ]


def _broker_redis() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Broker memory",
            "Used memory against maxmemory; the broker never evicts, so when full it refuses "
            "new tasks.",
            unit="bytes",
            span=8,
            queries={
                "used": 'max(redis_memory_used_bytes{$scope, component="broker"})',
                "max": 'max(redis_memory_max_bytes{$scope, component="broker"})',
            },
        ),
        timeseries_panel(
            "Broker evictions",
            "Must stay 0: an evicted key is a lost task.",
            unit="short",
            span=8,
            queries={
                "evicted": (
                    "sum(increase(redis_evicted_keys_total"
                    '{$scope, component="broker"}[$__rate_interval]))'
                ),
            },
            thresholds={"red": 1},
        ),
        timeseries_panel(
            "Broker clients and commands",
            "Connected clients and commands per second.",
            unit="short",
            span=8,
            queries={
                "clients": 'sum(redis_connected_clients{$scope, component="broker"})',
                "commands/s": (
                    "sum(rate(redis_commands_processed_total"
                    '{$scope, component="broker"}[$__rate_interval]))'
                ),
            },
        ),
    ]
