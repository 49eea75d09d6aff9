"""What the operator reads from Deployments, HPAs and Pods."""

from __future__ import annotations

from typing import Any

from services.operator.kube_observation import (
    deployment_facts,
    hpa_facts,
    observe,
    pod_facts,
)
from services.operator.spec import BudgetSpec

SPEC = BudgetSpec.parse(
    {
        "postgres": {"secretRef": {"name": "pg"}},
        "pooled": [
            {
                "name": "api",
                "deployment": "api",
                "horizontalPodAutoscaler": "api",
                "minPoolSize": 1,
                "maxPoolSize": 10,
                "pgbouncer": {"adminSecretRef": {"name": "admin"}, "configMap": "pool"},
            }
        ],
        "fixed": [
            {
                "name": "worker",
                "deployment": "worker",
                "horizontalPodAutoscaler": "worker",
                "connectionsPerPod": 4,
            },
            {"name": "migrations", "connectionsPerPod": 2},
        ],
    }
)


def deployment(name: str, replicas: int, strategy: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": {"app": name}}}
    if strategy is not None:
        spec["strategy"] = strategy
    return {"metadata": {"name": name}, "spec": spec}


def pod(
    name: str, app: str, *, ready: bool = True, deleting: bool = False, phase: str = "Running"
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app": app, "pod-template-hash": "x"}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {
        "metadata": metadata,
        "status": {
            "phase": phase,
            "podIP": f"10.0.0.{len(name)}",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_the_hpa_leads_the_deployment_and_the_default_surge_is_a_quarter() -> None:
    observation = observe(
        SPEC,
        {
            "api": deployment_facts(deployment("api", 4)),
            "worker": deployment_facts(deployment("worker", 2)),
        },
        {
            "api": hpa_facts(
                {
                    "metadata": {"name": "api"},
                    "spec": {"maxReplicas": 20},
                    "status": {"desiredReplicas": 8},
                }
            ),
            "worker": hpa_facts({"metadata": {"name": "worker"}, "spec": {"maxReplicas": 5}}),
        },
        [
            pod_facts(pod("api-a", "api")),
            pod_facts(pod("api-b", "api", ready=False)),
            pod_facts(pod("api-c", "api", deleting=True)),
            pod_facts(pod("api-d", "api", phase="Succeeded")),
            pod_facts(pod("worker-a", "worker")),
        ],
    )
    assert not observation.missing
    (api,) = observation.pooled
    assert (api.replicas, api.desired_replicas, api.planned_replicas) == (4, 8, 8)
    assert api.surge.at(8) == 2  # Kubernetes' default maxSurge: 25 %
    # The terminating pod still holds connections; the finished one does not.
    assert api.pods_present == 3
    assert [p.name for p in api.ready_pods] == ["api-a"]
    worker, migrations = observation.fixed
    # The worker's worst case: its HPA's maximum plus a surge of 25 % of it.
    assert (worker.replicas, worker.surge, worker.demand().connections) == (5, 2, 28)
    assert migrations.demand().connections == 2


def test_a_recreate_deployment_has_no_surge_and_missing_objects_are_named() -> None:
    observation = observe(
        SPEC,
        {"api": deployment_facts(deployment("api", 3, {"type": "Recreate"}))},
        {},
        [],
    )
    assert observation.missing == (
        "HorizontalPodAutoscaler api",
        "HorizontalPodAutoscaler worker",
        "Deployment worker",
    )
    assert observation.pooled[0].surge.at(3) == 0
