"""A reconcile's outcome as the ConnectionBudget's status, its conditions and the Events
that tell what changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from services.operator.reconcile import Outcome

ConditionType = Literal["Ready", "WithinBudget", "HPAMaxExceedsBudget", "ApplyFailed"]
CONDITION_TYPES: tuple[ConditionType, ...] = (
    "Ready",
    "WithinBudget",
    "HPAMaxExceedsBudget",
    "ApplyFailed",
)
# The conditions whose True state is bad news (a Warning Event when they turn True).
_BAD_WHEN_TRUE = {"HPAMaxExceedsBudget", "ApplyFailed"}


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str

    @property
    def healthy(self) -> bool:
        return (self.status == "True") != (self.type in _BAD_WHEN_TRUE)


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Report:
    status: dict[str, Any]
    events: list[Event]
    conditions: list[Condition]


def conditions_of(outcome: Outcome) -> list[Condition]:
    allocation = outcome.allocation
    failures = {
        f"{name}/{pod}": why
        for name, applied in outcome.applied.items()
        for pod, why in applied.failed.items()
    }
    store_errors = {n: a.store_error for n, a in outcome.applied.items() if a.store_error}
    if outcome.configuration_error:
        ready = Condition("Ready", "False", "ConfigurationError", outcome.configuration_error)
    elif outcome.observation.missing:
        missing = ", ".join(outcome.observation.missing)
        ready = Condition("Ready", "False", "ObjectsMissing", f"not found: {missing}")
    elif allocation is None:
        ready = Condition(
            "Ready",
            "False",
            "PostgresUnreachable",
            f"nothing changed: {outcome.postgres_error}",
        )
    elif failures or store_errors:
        ready = Condition("Ready", "False", "ApplyFailed", "some pods or stores kept old sizes")
    elif outcome.postgres_error:
        ready = Condition(
            "Ready",
            "True",
            "AppliedWithoutPostgres",
            f"applied from the spec's maxConnections; in use unknown: {outcome.postgres_error}",
        )
    else:
        ready = Condition("Ready", "True", "Applied", "every Ready pod runs its pool size")

    if allocation is None:
        within = Condition("WithinBudget", "Unknown", "NotComputed", ready.message)
    elif allocation.feasible:
        within = Condition(
            "WithinBudget",
            "True",
            "Fits",
            f"{allocation.allocated} of {allocation.budget} connections allocated",
        )
    else:
        within = Condition(
            "WithinBudget",
            "False",
            "BudgetTooSmall",
            f"the minimum pools need {allocation.allocated} connections, the budget is "
            f"{allocation.budget}: pools stay at their minimums",
        )

    exceeding = [
        f"{p.spec.name}: HPA maxReplicas {p.hpa_max_replicas} > "
        f"{allocation.share(p.spec.name).max_replicas_allowed} the budget allows"
        for p in outcome.observation.pooled
        if allocation is not None
        and p.hpa_max_replicas is not None
        and p.hpa_max_replicas > allocation.share(p.spec.name).max_replicas_allowed
    ]
    if allocation is None:
        hpa = Condition("HPAMaxExceedsBudget", "Unknown", "NotComputed", ready.message)
    elif exceeding:
        hpa = Condition("HPAMaxExceedsBudget", "True", "MaxReplicasTooHigh", "; ".join(exceeding))
    else:
        hpa = Condition("HPAMaxExceedsBudget", "False", "Fits", "every HPA's maximum fits")

    if failures or store_errors:
        message = "; ".join(
            [f"{pod}: {why}" for pod, why in sorted(failures.items())]
            + [f"{name} store: {why}" for name, why in sorted(store_errors.items())]
        )
        apply = Condition("ApplyFailed", "True", "PodsNotApplied", message)
    else:
        apply = Condition("ApplyFailed", "False", "AllApplied", "no failures")
    return [ready, within, hpa, apply]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _merge_conditions(
    new: Sequence[Condition], previous: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[Condition]]:
    """Status conditions keeping ``lastTransitionTime`` while the status holds, and the
    conditions whose status changed."""
    before = {c.get("type"): c for c in previous}
    now = now_iso()
    rendered, changed = [], []
    for condition in new:
        old = before.get(condition.type)
        same = old is not None and old.get("status") == condition.status
        if not same:
            changed.append(condition)
        rendered.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": old.get("lastTransitionTime", now) if same and old else now,
            }
        )
    return rendered, changed


def report(outcome: Outcome, previous_status: Mapping[str, Any], generation: int | None) -> Report:
    """The new status and the Events for what differs from ``previous_status``."""
    conditions = conditions_of(outcome)
    rendered, changed = _merge_conditions(conditions, previous_status.get("conditions") or [])
    status: dict[str, Any] = {"conditions": rendered, "lastReconcileTime": now_iso()}
    if generation is not None:
        status["observedGeneration"] = generation
    if outcome.in_use is not None:
        status["inUse"] = outcome.in_use
    events: list[Event] = []
    allocation = outcome.allocation
    if allocation is not None:
        status.update(
            capacity=allocation.capacity,
            budget=allocation.budget,
            allocated=allocation.allocated,
        )
        status["consumers"] = _consumers(outcome)
        events += _resize_events(outcome, previous_status)
    for condition in changed:
        warning = not condition.healthy and condition.status != "Unknown"
        events.append(
            Event(
                "Warning" if warning else "Normal",
                f"{condition.type}{condition.status}",
                f"{condition.type} is {condition.status} ({condition.reason}): {condition.message}",
            )
        )
    return Report(status, events, conditions)


def _consumers(outcome: Outcome) -> list[dict[str, Any]]:
    assert outcome.allocation is not None
    consumers: list[dict[str, Any]] = []
    for pooled in outcome.observation.pooled:
        share = outcome.allocation.share(pooled.spec.name)
        applied = outcome.applied.get(pooled.spec.name)
        entry: dict[str, Any] = {
            "name": pooled.spec.name,
            "kind": "pooled",
            "replicas": pooled.replicas,
            "desiredReplicas": pooled.desired_replicas,
            "surge": pooled.surge.at(pooled.planned_replicas),
            "connections": share.connections,
            "poolSizePerPod": share.pool_size,
            "podsApplied": len(applied.applied) if applied else 0,
            "podsTotal": len(pooled.ready_pods),
            "maxReplicasAllowed": share.max_replicas_allowed,
        }
        in_use = outcome.in_use_by(pooled.spec.role)
        if in_use is not None:
            entry["inUse"] = in_use
        consumers.append(entry)
    for fixed in outcome.observation.fixed:
        demand = fixed.demand()
        entry = {
            "name": fixed.spec.name,
            "kind": "fixed",
            "replicas": fixed.replicas,
            "desiredReplicas": fixed.replicas,
            "surge": fixed.surge,
            "connections": demand.connections,
        }
        in_use = outcome.in_use_by(fixed.spec.role)
        if in_use is not None:
            entry["inUse"] = in_use
        consumers.append(entry)
    return consumers


def _resize_events(outcome: Outcome, previous_status: Mapping[str, Any]) -> list[Event]:
    assert outcome.allocation is not None
    before = {
        c.get("name"): c.get("poolSizePerPod") for c in previous_status.get("consumers") or []
    }
    events = []
    for share in outcome.allocation.shares:
        old = before.get(share.name)
        if old != share.pool_size:
            events.append(
                Event(
                    "Normal",
                    "PoolResized",
                    f"{share.name}: pool {old if old is not None else 'unset'} -> "
                    f"{share.pool_size} per pod for {share.pods} pods "
                    f"({share.connections} of a budget of {outcome.allocation.budget})",
                )
            )
    return events
