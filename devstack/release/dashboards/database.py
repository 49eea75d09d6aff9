"""Stampede / Database & PgBouncer: is the database path the bottleneck, and does the
ConnectionBudget operator keep the pools within Postgres' connections?"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from devstack.release.dashboards.shared import (
    TIMESERIES_HEIGHT,
    Section,
    board,
    quantile,
    stat_panel,
    timeseries_panel,
)

POSTGRES_ROW_HEIGHT = 6


def build() -> Dashboard:
    return board(
        "database",
        "Stampede / Database & PgBouncer",
        "Is the database path the bottleneck? App pools, PgBouncer pools, the connection "
        "budget the operator keeps, and Postgres itself.",
        [
            Section("App connection pools", _app_pools()),
            Section("PgBouncer (transaction pooling)", _pgbouncer()),
            Section("Connection budget (operator)", _budget()),
            Section("Postgres", _postgres()),
        ],
    )


def _app_pools() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Pool connections",
            "Checked out vs capacity over all api workers; overflow is beyond pool_size.",
            unit="short",
            span=8,
            queries={
                "checked out": "sum(stampede_db_pool_checked_out{$scope})",
                "overflow": "sum(stampede_db_pool_overflow{$scope})",
                "capacity": "sum(stampede_db_pool_capacity{$scope})",
            },
        ),
        timeseries_panel(
            "Pool wait p99",
            "How long a request waited for a pooled connection.",
            unit="s",
            span=8,
            queries={"p99 wait": quantile(0.99, "stampede_db_pool_acquire_seconds")},
            thresholds={"orange": 0.05, "red": 0.5},
        ),
        timeseries_panel(
            "Pool timeouts / s",
            "Requests that gave up waiting for a connection (answered 503).",
            unit="reqps",
            span=8,
            queries={
                "timeouts": "sum(rate(stampede_db_pool_timeouts_total{$scope}[$__rate_interval]))",
            },
            thresholds={"red": 0.001},
        ),
    ]


def _pgbouncer() -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            "Client connections",
            "Active clients hold a server connection; waiting ones queue for one.",
            unit="short",
            span=8,
            queries={
                "active": "sum(pgbouncer_pools_client_active_connections{$scope})",
                "waiting": "sum(pgbouncer_pools_client_waiting_connections{$scope})",
            },
        ),
        timeseries_panel(
            "Server connections",
            "Postgres connections PgBouncer holds: active (in a transaction) and idle, "
            "against the pool size.",
            unit="short",
            span=8,
            queries={
                "active": "sum(pgbouncer_pools_server_active_connections{$scope})",
                "idle": "sum(pgbouncer_pools_server_idle_connections{$scope})",
                "pool size": "sum(pgbouncer_databases_database_pool_size{$scope})",
            },
        ),
        timeseries_panel(
            "Longest client wait",
            "How long the oldest waiting client has waited. Alert: > 1 s for 2 min.",
            unit="s",
            span=8,
            queries={"max wait": "max(pgbouncer_pools_client_maxwait_seconds{$scope})"},
            thresholds={"red": 1},
        ),
        timeseries_panel(
            "Transactions and queries / s",
            "Pooled through PgBouncer.",
            unit="ops",
            span=12,
            queries={
                "transactions": (
                    "sum(rate(pgbouncer_stats_transactions_total{$scope}[$__rate_interval]))"
                ),
                "queries": "sum(rate(pgbouncer_stats_queries_total{$scope}[$__rate_interval]))",
            },
        ),
        timeseries_panel(
            "Average query and wait time",
            "Mean time a query spent in Postgres, and waiting for a server connection.",
            unit="s",
            span=12,
            # PgBouncer counts microseconds; the panel's unit is seconds.
            queries={
                "query": (
                    "sum(rate(pgbouncer_stats_queries_duration_microseconds_total"
                    "{$scope}[$__rate_interval]))"
                    " / sum(rate(pgbouncer_stats_queries_total{$scope}[$__rate_interval])) / 1e6"
                ),
                "wait": (
                    "sum(rate(pgbouncer_stats_waiting_duration_microseconds_total"
                    "{$scope}[$__rate_interval]))"
                    " / sum(rate(pgbouncer_stats_queries_total{$scope}[$__rate_interval])) / 1e6"
                ),
            },
        ),
    ]


def _budget() -> list[Builder[Panel]]:
    """The ConnectionBudget operator's view (docs/operator.md), one release's budget."""
    return [
        timeseries_panel(
            "Budget, allocated and in use",
            "Connections the consumers may hold (max_connections minus the reserve), what "
            "the pools and fixed consumers add up to, and what Postgres counts open for "
            "their roles. Allocated never exceeds the budget.",
            unit="short",
            span=8,
            queries={
                "budget": "max(stampede_operator_budget_connections{$scope})",
                "allocated": "max(stampede_operator_allocated_connections{$scope})",
                "in use": "max(stampede_operator_in_use_connections{$scope})",
            },
        ),
        timeseries_panel(
            "Pool size per pod",
            "The PgBouncer pool each pod of a pooled consumer gets (default_pool_size): "
            "shrinks as the HPA adds pods, grows as it removes them.",
            unit="short",
            span=8,
            queries={"{{consumer}}": "max by (consumer) (stampede_operator_pool_size{$scope})"},
        ),
        timeseries_panel(
            "Replicas and the budget's limit",
            "Pods per consumer now, what the HPA asks for, and the most the budget allows "
            "at the minimum pool.",
            unit="short",
            span=8,
            queries={
                "{{consumer}} replicas": ("max by (consumer) (stampede_operator_replicas{$scope})"),
                "{{consumer}} desired": (
                    "max by (consumer) (stampede_operator_desired_replicas{$scope})"
                ),
                "{{consumer}} max allowed": (
                    "max by (consumer) (stampede_operator_max_replicas_allowed{$scope})"
                ),
            },
        ),
        stat_panel(
            "Conditions",
            "1 = true. Ready and WithinBudget should be 1; HPAMaxExceedsBudget and "
            "ApplyFailed 0 (alerts: StampedeHPAMaxExceedsBudget, StampedeBudgetApplyFailing).",
            unit="bool",
            span=6,
            height=TIMESERIES_HEIGHT,
            queries={
                "{{condition}}": "max by (condition) (stampede_operator_condition{$scope})",
            },
        ),
        timeseries_panel(
            "Pods applied",
            "Pods whose PgBouncer runs the current pool size, of all Ready pods.",
            unit="short",
            span=6,
            queries={
                "{{consumer}} applied": (
                    "max by (consumer) (stampede_operator_pods_applied{$scope})"
                ),
                "{{consumer}} pods": "max by (consumer) (stampede_operator_pods_total{$scope})",
            },
        ),
        timeseries_panel(
            "Apply failures / s",
            "Pushes of a pool size to a pod's admin console that failed (retried).",
            unit="ops",
            span=6,
            queries={
                "{{consumer}}": (
                    "sum by (consumer) (rate(stampede_operator_apply_failures_total"
                    "{$scope}[$__rate_interval]))"
                ),
            },
            thresholds={"red": 0.001},
        ),
        timeseries_panel(
            "Reconcile duration",
            "One reconcile: read the replicas and Postgres, compute, write and push.",
            unit="s",
            span=6,
            queries={
                "p50": quantile(0.5, "stampede_operator_reconcile_duration_seconds"),
                "p99": quantile(0.99, "stampede_operator_reconcile_duration_seconds"),
            },
            thresholds={"orange": 1, "red": 5},
        ),
    ]


def _postgres() -> list[Builder[Panel]]:
    return [
        stat_panel(
            "Postgres up",
            "The exporter reaches Postgres.",
            unit="bool",
            span=6,
            height=POSTGRES_ROW_HEIGHT,
            queries={"up": "max(pg_up{$scope})"},
        ),
        timeseries_panel(
            "Connections by state",
            "Backends of the app database (active, idle, idle in transaction).",
            unit="short",
            span=9,
            height=POSTGRES_ROW_HEIGHT,
            queries={
                "{{state}}": 'sum by (state) (pg_stat_activity_count{$scope, datname="stampede"})',
            },
        ),
        timeseries_panel(
            "Commits and rollbacks / s",
            "Transactions of the app database.",
            unit="ops",
            span=9,
            height=POSTGRES_ROW_HEIGHT,
            queries={
                "commits": (
                    "sum(rate(pg_stat_database_xact_commit"
                    '{$scope, datname="stampede"}[$__rate_interval]))'
                ),
                "rollbacks": (
                    "sum(rate(pg_stat_database_xact_rollback"
                    '{$scope, datname="stampede"}[$__rate_interval]))'
                ),
            },
        ),
        timeseries_panel(
            "Rows read and written / s",
            "Tuples fetched vs inserted/updated/deleted.",
            unit="ops",
            span=12,
            height=POSTGRES_ROW_HEIGHT,
            queries={
                "fetched": (
                    "sum(rate(pg_stat_database_tup_fetched"
                    '{$scope, datname="stampede"}[$__rate_interval]))'
                ),
                "written": (
                    'sum(rate(pg_stat_database_tup_inserted{$scope, datname="stampede"}'
                    "[$__rate_interval])"
                    ' + rate(pg_stat_database_tup_updated{$scope, datname="stampede"}'
                    "[$__rate_interval])"
                    ' + rate(pg_stat_database_tup_deleted{$scope, datname="stampede"}'
                    "[$__rate_interval]))"
                ),
            },
        ),
        timeseries_panel(
            "Deadlocks and conflicts",
            "Should stay at zero: orders lock products in id order.",
            unit="short",
            span=6,
            height=POSTGRES_ROW_HEIGHT,
            queries={
                "deadlocks": (
                    "sum(increase(pg_stat_database_deadlocks"
                    '{$scope, datname="stampede"}[$__rate_interval]))'
                ),
            },
            thresholds={"red": 1},
        ),
        stat_panel(
            "Database size",
            "On-disk size of the app database.",
            unit="bytes",
            span=6,
            height=POSTGRES_ROW_HEIGHT,
            queries={"size": 'sum(pg_database_size_bytes{$scope, datname="stampede"})'},
        ),
    ]
