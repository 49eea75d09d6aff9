"""The ConnectionBudget operator in kind: the real HPA scales the api, the operator resizes
every sidecar's pool and Postgres never runs out of connections (see conftest for when
these run; tests/operator runs the same scenarios here against kmock and real PgBouncers)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.cluster import Cluster, eventually

RELEASE = "stampede"


def _budget(cluster: Cluster) -> dict[str, Any]:
    budgets: list[dict[str, Any]] = cluster.get("connectionbudgets")["items"]
    assert budgets, "no ConnectionBudget in the release's namespace"
    return budgets[0]


def _api(budget: dict[str, Any]) -> dict[str, Any]:
    consumers = budget.get("status", {}).get("consumers", [])
    pooled = [c for c in consumers if c.get("kind") == "pooled"]
    assert pooled, budget.get("status")
    return pooled[0]


def _max_connections(cluster: Cluster) -> tuple[int, int]:
    sql = (
        "SELECT current_setting('max_connections'),"
        " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
    )
    out = cluster.kubectl(
        "exec", f"statefulset/{RELEASE}-postgresql", "--", "psql", "-U", "postgres", "-tAc", sql
    )
    limit, used = out.strip().split("|")
    return int(limit), int(used)


def test_the_budget_is_ready_and_within_postgres(cluster: Cluster) -> None:
    def ready() -> dict[str, Any]:
        budget = _budget(cluster)
        conditions = {
            c["type"]: c["status"] for c in budget.get("status", {}).get("conditions", [])
        }
        assert conditions.get("Ready") == "True", budget.get("status")
        assert conditions.get("WithinBudget") == "True", budget.get("status")
        return budget

    budget = eventually(ready)
    limit, used = _max_connections(cluster)
    assert budget["status"]["allocated"] <= budget["status"]["budget"] < limit
    assert used < limit


def test_scaling_the_hpa_resizes_every_pool(cluster: Cluster) -> None:
    hpa_name = _budget(cluster)["spec"]["pooled"][0]["horizontalPodAutoscaler"]
    hpa = cluster.get("hpa", hpa_name)
    before = _api(_budget(cluster))
    target = min(before["replicas"] + 3, hpa["spec"]["maxReplicas"])
    original_min = hpa["spec"].get("minReplicas", 1)
    patch = json.dumps({"spec": {"minReplicas": target}})
    cluster.kubectl("patch", "hpa", hpa_name, "--type=merge", "-p", patch)
    try:

        def resized() -> dict[str, Any]:
            api = _api(_budget(cluster))
            assert api["desiredReplicas"] == target, api
            assert api["podsApplied"] == api["podsTotal"] == target, api
            return api

        after = eventually(resized, timeout=300)
        assert after["poolSizePerPod"] <= before["poolSizePerPod"]
        config_map = _budget(cluster)["spec"]["pooled"][0]["pgbouncer"]["configMap"]
        pool_ini = cluster.get("configmap", config_map)["data"]["pool.ini"]
        assert f"default_pool_size = {after['poolSizePerPod']}" in pool_ini
        limit, used = _max_connections(cluster)
        assert used < limit
    finally:
        patch = json.dumps({"spec": {"minReplicas": original_min}})
        cluster.kubectl("patch", "hpa", hpa_name, "--type=merge", "-p", patch)
