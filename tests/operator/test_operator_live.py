"""The operator end to end: kopf in-process against kmock's emulated API, real PgBouncer
sidecars as the pods, one real Postgres with max_connections 40.

Budget of every scenario (unless it says otherwise): capacity 40 - 3 reserved for
superusers = 37, reserve 4, one worker at 2 connections: 31 for the api's pools."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.operator.conftest import MAX_CONNECTIONS
from tests.support.emulated_cluster import EmulatedCluster, operator_running
from tests.support.endpoints import APP_DB, APP_PASSWORD, APP_USER, DatabaseEndpoint
from tests.support.operator_pods import PodFleet, burst, pool_size, wait_for_pool_sizes
from tests.support.sidecar_pgbouncer import OPERATOR_ADMIN, OPERATOR_ADMIN_PASSWORD

pytestmark = pytest.mark.slow

BUDGET = "stampede"
FIGURES: dict[str, Any] = {}


def spec(fleet: PodFleet, **overrides: Any) -> dict[str, Any]:
    pooled = {
        "name": "api",
        "deployment": "api",
        "horizontalPodAutoscaler": "api",
        "minPoolSize": 1,
        "maxPoolSize": 10,
        "role": APP_USER,
        "pgbouncer": {
            "port": fleet.port,
            "adminSecretRef": {"name": "pool-admin"},
            "configMap": "api-pool",
        },
    }
    pooled.update(overrides.pop("pooled", {}))
    return {
        "postgres": {"secretRef": {"name": "postgres"}, "maxConnections": "auto"},
        "reserve": 4,
        "intervalSeconds": 30,
        "pooled": [pooled],
        "fixed": [{"name": "worker", "replicas": 1, "connectionsPerPod": 2, "role": APP_USER}],
        **overrides,
    }


async def seed(
    cluster: EmulatedCluster,
    fleet: PodFleet,
    postgres: DatabaseEndpoint,
    replicas: int,
    *,
    initial_pool: int = 5,
    postgres_port: int | None = None,
    refusing: frozenset[str] = frozenset(),
    **spec_overrides: Any,
) -> None:
    """What the chart installs: Secrets, the pool ConfigMap at its render-time value, the
    Deployment and HPA, ``replicas`` Ready pods, and the budget."""
    await cluster.secret(
        "postgres",
        {
            "host": postgres.host,
            "port": str(postgres_port or postgres.port),
            "database": APP_DB,
            "username": APP_USER,
            "password": APP_PASSWORD,
        },
    )
    await cluster.secret("pool-admin", {"username": OPERATOR_ADMIN, "password": OPERATOR_ADMIN_PASSWORD})
    await cluster.config_map("api-pool", {"pool.ini": f"default_pool_size = {initial_pool}\n"})
    await cluster.deployment("api", replicas)
    await cluster.hpa("api", max_replicas=12, desired=replicas)
    for index in range(1, replicas + 1):
        await start_pod(cluster, fleet, f"pod-{index}", initial_pool, f"pod-{index}" in refusing)
    await cluster.budget(BUDGET, spec(fleet, **spec_overrides))


async def start_pod(
    cluster: EmulatedCluster, fleet: PodFleet, name: str, pool: int, refuses: bool = False
) -> None:
    """The kubelet's part: start the sidecar from the ConfigMap's value, then the Pod is Ready."""
    pod = await asyncio.to_thread(fleet.start, name, pool, refuses)
    await cluster.pod(name, "api", pod.address)


def configmap_pool(cluster: EmulatedCluster) -> int:
    text = cluster.config_map_data("api-pool")["pool.ini"]
    return int(text.split("default_pool_size = ")[1].split()[0])


async def eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def assert_burst_within(
    postgres: DatabaseEndpoint, fleet: PodFleet, allocated: int, label: str
) -> None:
    result = await burst(postgres, fleet.running())
    FIGURES[f"burst {label}"] = (
        f"peak {result.peak_server_connections} server connections for "
        f"{len(fleet.running())} pods (allocated {allocated}, max_connections {MAX_CONNECTIONS}),"
        f" {result.queries} queries, {len(result.errors)} errors"
    )
    assert not result.errors, result.errors[:3]
    assert result.peak_server_connections <= allocated <= MAX_CONNECTIONS


async def test_scaling_2_to_12_to_3_resizes_every_pool_within_the_budget(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    await seed(cluster, fleet, budget_postgres, replicas=2)
    async with operator_running(cluster):
        # 2 replicas + a 25 % surge of 1 = 3 pods: 31 // 3 = 10 (the maximum).
        await eventually(lambda: _assert(cluster.status(BUDGET)["allocated"] == 30))
        status = cluster.status(BUDGET)
        assert (status["budget"], status["capacity"]) == (31, 37)
        (api, worker) = status["consumers"]
        assert api["poolSizePerPod"] == 10
        assert (api["podsApplied"], api["podsTotal"], api["surge"]) == (2, 2, 1)
        assert api["maxReplicasAllowed"] == 24  # 24 + a surge of 6 = 30 pods at 1 <= 31
        assert worker == {
            "name": "worker", "kind": "fixed", "replicas": 1, "desiredReplicas": 1,
            "surge": 0, "connections": 2, "inUse": worker["inUse"],
        }
        await wait_for_pool_sizes(fleet.running(), 10)
        assert configmap_pool(cluster) == 10
        await assert_burst_within(budget_postgres, fleet, 20, "at 2 replicas")

        # The HPA scales to 12: 12 + 3 surge = 15 pods, 31 // 15 = 2 per pod.
        started = time.monotonic()
        await cluster.hpa_desires("api", 12)
        FIGURES["reaction 2->12, the running pods"] = (
            f"{await wait_for_pool_sizes(fleet.running(), 2):.2f} s"
        )
        await eventually(lambda: _assert(configmap_pool(cluster) == 2))
        for index in range(3, 13):
            await start_pod(cluster, fleet, f"pod-{index}", configmap_pool(cluster))
        await wait_for_pool_sizes(fleet.running(), 2)
        await eventually(lambda: _assert(cluster.status(BUDGET)["consumers"][0]["podsApplied"] == 12))
        FIGURES["2->12, every pod (10 started) applied"] = f"{time.monotonic() - started:.2f} s"
        status = cluster.status(BUDGET)
        assert (status["allocated"], status["consumers"][0]["poolSizePerPod"]) == (30, 2)
        await assert_burst_within(budget_postgres, fleet, 24, "at 12 replicas")

        # Back to 3: 3 + 1 surge = 4 pods, 31 // 4 = 7.
        started = time.monotonic()
        await cluster.hpa_desires("api", 3)
        # The kubelet: the pods turn not Ready and terminating; within their grace period
        # their containers stop, then the objects go.
        for index in range(4, 13):
            await cluster.terminate_pod(f"pod-{index}")
        await eventually(lambda: _assert(cluster.status(BUDGET)["consumers"][0]["podsTotal"] == 3))
        for index in range(4, 13):
            await asyncio.to_thread(fleet.stop, f"pod-{index}")
            await cluster.remove_pod(f"pod-{index}")
        FIGURES["reaction 12->3, every remaining pod"] = (
            f"{await wait_for_pool_sizes(fleet.running(), 7):.2f} s"
        )
        await eventually(lambda: _assert(configmap_pool(cluster) == 7))
        await eventually(lambda: _assert(cluster.status(BUDGET)["allocated"] == 28))
        await assert_burst_within(budget_postgres, fleet, 21, "at 3 replicas")
        assert cluster.condition(BUDGET, "Ready")["status"] == "True"
        assert cluster.condition(BUDGET, "WithinBudget")["status"] == "True"
        assert cluster.condition(BUDGET, "HPAMaxExceedsBudget")["status"] == "False"
        resized = [e for e in cluster.events() if e.get("reason") == "PoolResized"]
        changes = [e["message"].split(" per pod")[0] for e in resized]
        # In between, pods still terminating keep a smaller pool: they hold connections.
        assert changes[:2] == ["api: pool unset -> 10", "api: pool 10 -> 2"]
        assert changes[-1].endswith("-> 7")
        assert not [e["message"] for e in cluster.events() if e.get("reason") == "ApplyFailedTrue"]
    print(FIGURES)


def _assert(condition: bool) -> None:
    assert condition
