"""Prometheus metrics of the operator (names fixed by the chart's dashboard and alerts)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.operator.status import CONDITION_TYPES, Report

BUDGET = Gauge(
    "stampede_operator_budget_connections",
    "Connections the pooled consumers may hold: capacity - reserve - fixed consumers.",
    ["budget"],
)
ALLOCATED = Gauge(
    "stampede_operator_allocated_connections",
    "Connections the pooled consumers' pools add up to (pods x pool size).",
    ["budget"],
)
IN_USE = Gauge(
    "stampede_operator_in_use_connections",
    "Connections the consumers' roles hold in Postgres (pg_stat_activity).",
    ["budget"],
)
POOL_SIZE = Gauge("stampede_operator_pool_size", "Pool size per pod.", ["budget", "consumer"])
REPLICAS = Gauge(
    "stampede_operator_replicas", "The consumer's Deployment replicas.", ["budget", "consumer"]
)
DESIRED_REPLICAS = Gauge(
    "stampede_operator_desired_replicas",
    "The consumer's desired replicas (its HPA's, else the Deployment's).",
    ["budget", "consumer"],
)
MAX_REPLICAS_ALLOWED = Gauge(
    "stampede_operator_max_replicas_allowed",
    "The most replicas the budget allows at the minimum pool size.",
    ["budget", "consumer"],
)
PODS_APPLIED = Gauge(
    "stampede_operator_pods_applied",
    "Ready pods running the computed pool size.",
    ["budget", "consumer"],
)
PODS_TOTAL = Gauge("stampede_operator_pods_total", "Ready pods.", ["budget", "consumer"])
CONDITION = Gauge(
    "stampede_operator_condition",
    "1 while the condition is True, else 0.",
    ["budget", "condition"],
)
APPLY_FAILURES = Counter(
    "stampede_operator_apply_failures_total",
    "Pods (or the stored value) that failed to take a pool size in a reconcile.",
    ["budget", "consumer"],
)
RECONCILE_DURATION = Histogram(
    "stampede_operator_reconcile_duration_seconds",
    "One reconcile: Postgres read, computation, ConfigMap and every pod's console.",
    ["budget"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def record(budget: str, report: Report, apply_failures: dict[str, int]) -> None:
    """Set the gauges from a reconcile's report (values it could not compute keep theirs)."""
    status = report.status
    for gauge, key in ((BUDGET, "budget"), (ALLOCATED, "allocated"), (IN_USE, "inUse")):
        if key in status:
            gauge.labels(budget).set(status[key])
    for consumer in status.get("consumers", []):
        labels = (budget, consumer["name"])
        REPLICAS.labels(*labels).set(consumer["replicas"])
        DESIRED_REPLICAS.labels(*labels).set(consumer["desiredReplicas"])
        if consumer["kind"] != "pooled":
            continue
        POOL_SIZE.labels(*labels).set(consumer["poolSizePerPod"])
        MAX_REPLICAS_ALLOWED.labels(*labels).set(consumer["maxReplicasAllowed"])
        PODS_APPLIED.labels(*labels).set(consumer["podsApplied"])
        PODS_TOTAL.labels(*labels).set(consumer["podsTotal"])
        # Present from the first reconcile, so rate() and alerts see the series.
        APPLY_FAILURES.labels(*labels).inc(apply_failures.get(consumer["name"], 0))
    by_type = {condition.type: condition.status for condition in report.conditions}
    for condition_type in CONDITION_TYPES:
        CONDITION.labels(budget, condition_type).set(by_type.get(condition_type) == "True")


def forget(budget: str) -> None:
    """Drop a deleted budget's series."""
    for metric in (
        BUDGET,
        ALLOCATED,
        IN_USE,
        RECONCILE_DURATION,
        POOL_SIZE,
        REPLICAS,
        DESIRED_REPLICAS,
        MAX_REPLICAS_ALLOWED,
        PODS_APPLIED,
        PODS_TOTAL,
        APPLY_FAILURES,
        CONDITION,
    ):
        for labels in _label_sets(metric):
            if labels[0] == budget:
                metric.remove(*labels)


def _label_sets(metric: Gauge | Counter | Histogram) -> set[tuple[str, ...]]:
    """The label values of every child; ``budget`` comes first in every metric here."""
    return {
        tuple(value for name, value in sample.labels.items() if name != "le")
        for family in metric.collect()
        for sample in family.samples
    }
