"""One budget's reconcile turned into a report and metrics, and when to run the next."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from services.operator import metrics
from services.operator.observation import Observation
from services.operator.reconcile import BudgetIO, reconcile
from services.operator.spec import BudgetSpec
from services.operator.status import Report, report


async def run_cycle(
    key: str,
    spec: BudgetSpec,
    observation: Observation,
    io: BudgetIO,
    previous_status: Mapping[str, Any],
    generation: int | None,
) -> Report:
    """Reconcile ``spec``; record its metrics under ``key`` ("namespace/name")."""
    started = time.perf_counter()
    outcome = await reconcile(spec, observation, io)
    result = report(outcome, previous_status, generation)
    failures = {
        name: len(applied.failed) + (1 if applied.store_error else 0)
        for name, applied in outcome.applied.items()
    }
    metrics.record(key, result, failures)
    metrics.RECONCILE_DURATION.labels(key).observe(time.perf_counter() - started)
    return result


def next_delay(result: Report, spec: BudgetSpec, retry_interval: float) -> float:
    """Soon while anything is not right, else the spec's interval."""
    if all(
        condition.healthy for condition in result.conditions if condition.type != "WithinBudget"
    ):
        return spec.interval_seconds
    return min(retry_interval, spec.interval_seconds)
