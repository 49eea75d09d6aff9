"""The operator end to end: kopf in-process against kmock's emulated API, real PgBouncer
sidecars as the pods, one real Postgres with max_connections 40.

Budget of every scenario (unless it says otherwise): capacity 40 - 3 reserved for
superusers = 37, reserve 4, one worker at 2 connections: 31 for the api's pools."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.operator.rbac import REQUIRED_RULES
from services.operator.settings import OperatorSettings
from tests.operator.conftest import MAX_CONNECTIONS
from tests.support.crd import validate
from tests.support.emulated_cluster import EmulatedCluster, operator_running
from tests.support.endpoints import APP_DB, APP_PASSWORD, APP_USER, DatabaseEndpoint
from tests.support.operator_pods import (
    PodFleet,
    burst,
    pool_size,
    wait_for_pool_sizes,
    wait_for_surplus_closed,
)
from tests.support.sidecar_pgbouncer import OPERATOR_ADMIN, OPERATOR_ADMIN_PASSWORD

pytestmark = pytest.mark.slow

BUDGET = "stampede"
# Measured figures of this module's scenarios, written where docs/operator.md says.
FIGURES: dict[str, str] = {}
FIGURES_FILE = Path(__file__).resolve().parents[2] / ".cache" / "operator" / "figures.txt"


# Every Kubernetes API call the operator made in this module's scenarios.
CALLS: set[tuple[str, str, str]] = set()
SCENARIOS_RUN: set[str] = set()


@pytest.fixture(autouse=True)
def record_calls(request: pytest.FixtureRequest, cluster: EmulatedCluster) -> Iterator[None]:
    yield
    CALLS.update(cluster.operator_calls())
    SCENARIOS_RUN.add(request.node.name)


@pytest.fixture(scope="module", autouse=True)
def write_figures() -> Iterator[None]:
    yield
    if FIGURES:
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        FIGURES_FILE.write_text("".join(f"{name}: {value}\n" for name, value in FIGURES.items()))


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
    await cluster.secret(
        "pool-admin", {"username": OPERATOR_ADMIN, "password": OPERATOR_ADMIN_PASSWORD}
    )
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


async def eventually(check: Any, within_s: float = 10.0) -> Any:
    """``check()``'s result once it stops raising, polled every 50 ms for ``within_s``."""
    deadline = time.monotonic() + within_s
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
    # A shrunk pool's surplus connections close on PgBouncer's next maintenance pass: the
    # allocation holds from then (docs/operator.md, "Applying it live").
    FIGURES[f"surplus closed {label}"] = (
        f"{await wait_for_surplus_closed(fleet.running()):.2f} s after every pool was applied"
    )
    result = await burst(postgres, fleet.running())
    FIGURES[f"burst {label}"] = (
        f"peak {result.peak_server_connections} PgBouncer server connections for "
        f"{len(fleet.running())} pods (their pools add up to {allocated}); peak "
        f"{result.peak_client_backends} non-superuser connections in all (max_connections "
        f"{MAX_CONNECTIONS}, {MAX_CONNECTIONS - 3} for non-superusers); {result.queries} "
        f"queries, {len(result.errors)} errors"
    )
    assert not result.errors, result.errors[:3]
    assert result.peak_server_connections <= allocated
    assert result.peak_client_backends <= MAX_CONNECTIONS - 3


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
            "name": "worker",
            "kind": "fixed",
            "replicas": 1,
            "desiredReplicas": 1,
            "surge": 0,
            "connections": 2,
            "inUse": worker["inUse"],
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
        await eventually(
            lambda: _assert(cluster.status(BUDGET)["consumers"][0]["podsApplied"] == 12)
        )
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
        gone = time.monotonic()
        await wait_for_pool_sizes(fleet.running(), 7)
        # The pools grow only once the removed pods are gone (they hold connections until
        # then): the first figure includes this test's kubelet stopping nine PgBouncers.
        FIGURES["reaction 12->3, every remaining pod, from the replica change"] = (
            f"{time.monotonic() - started:.2f} s"
        )
        FIGURES["reaction 12->3, every remaining pod, from the last removed pod gone"] = (
            f"{time.monotonic() - gone:.2f} s"
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
        # What the operator wrote is what the CRD declares (else the API server prunes it).
        validate(
            {
                "apiVersion": "stampede.dev/v1alpha1",
                "kind": "ConnectionBudget",
                "metadata": {"name": BUDGET},
                "spec": spec(fleet),
                "status": cluster.status(BUDGET),
            }
        )


def _assert(condition: bool) -> None:
    assert condition


def _event(cluster: EmulatedCluster, reason: str) -> dict[str, Any]:
    events = [e for e in cluster.events() if e.get("reason") == reason]
    assert events, f"no {reason} Event"
    return events[-1]


async def test_a_rolling_update_is_sized_for_its_surge_and_for_every_pod_it_holds(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    await seed(cluster, fleet, budget_postgres, replicas=4, initial_pool=9)
    await cluster.set_max_surge("api", "50%")
    async with operator_running(cluster):
        # The Deployment's own maxSurge: 4 + 2 = 6 pods, 31 // 6 = 5.
        await wait_for_pool_sizes(fleet.running(), 5)
        api = cluster.status(BUDGET)["consumers"][0]
        assert (api["surge"], api["poolSizePerPod"]) == (2, 5)
        # The rollout starts its two surge pods from the ConfigMap: no resize needed.
        for name in ("pod-5", "pod-6"):
            await start_pod(cluster, fleet, name, configmap_pool(cluster))
        await wait_for_pool_sizes(fleet.running(), 5)
        await assert_burst_within(budget_postgres, fleet, 30, "rollout, 6 pods of 4 + 2")
        # A stuck rollout holding a seventh pod: sized for the pods that exist.
        await start_pod(cluster, fleet, "pod-7", configmap_pool(cluster))
        FIGURES["rollout: a 7th pod to every pool resized"] = (
            f"{await wait_for_pool_sizes(fleet.running(), 4):.2f} s"
        )
        await assert_burst_within(budget_postgres, fleet, 28, "rollout, 7 pods")
        # The old pods go; the Deployment's surge changes to 100 %: 4 + 4 = 8 pods, 3 each.
        for name in ("pod-1", "pod-2", "pod-3"):
            await cluster.terminate_pod(name)
        await eventually(lambda: _assert(cluster.status(BUDGET)["consumers"][0]["podsTotal"] == 4))
        for name in ("pod-1", "pod-2", "pod-3"):
            await asyncio.to_thread(fleet.stop, name)
            await cluster.remove_pod(name)
        await cluster.set_max_surge("api", "100%")
        await wait_for_pool_sizes(fleet.running(), 3)
        assert configmap_pool(cluster) == 3


async def test_a_pod_refusing_the_admin_connection_is_reported_retried_and_the_others_applied(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    from prometheus_client import REGISTRY

    labels = {"budget": f"shop/{BUDGET}", "consumer": "api"}
    failures_before = (
        REGISTRY.get_sample_value("stampede_operator_apply_failures_total", labels) or 0
    )
    await seed(cluster, fleet, budget_postgres, replicas=3, refusing=frozenset({"pod-2"}))
    async with operator_running(cluster):
        # 3 + 1 = 4 pods, 31 // 4 = 7: applied to pod-1 and pod-3 and the ConfigMap.
        applied = [fleet.pods["pod-1"], fleet.pods["pod-3"]]
        await wait_for_pool_sizes(applied, 7)
        await eventually(
            lambda: _assert(cluster.condition(BUDGET, "ApplyFailed")["status"] == "True")
        )
        assert configmap_pool(cluster) == 7
        failed = cluster.condition(BUDGET, "ApplyFailed")
        assert failed["message"].startswith("api/pod-2: ")
        assert "pod-1" not in failed["message"]
        assert cluster.condition(BUDGET, "Ready")["reason"] == "ApplyFailed"
        api = cluster.status(BUDGET)["consumers"][0]
        assert (api["podsApplied"], api["podsTotal"]) == (2, 3)
        # kopf posts Events from a queue of its own.
        await eventually(lambda: _assert(_event(cluster, "ApplyFailedTrue")["type"] == "Warning"))
        # Retried: each reconcile tries it again (3 attempts each), so the count grows.
        first = REGISTRY.get_sample_value("stampede_operator_apply_failures_total", labels)
        await eventually(
            lambda: _assert(
                REGISTRY.get_sample_value("stampede_operator_apply_failures_total", labels) > first
            )
        )
        assert first > failures_before
        # The pod is fixed (its sidecar restarts with the operator's admin): the next retry
        # applies it, with nothing else changing.
        await asyncio.to_thread(fleet.stop, "pod-2")
        await asyncio.to_thread(fleet.start, "pod-2", 5)
        await wait_for_pool_sizes(fleet.running(), 7)
        await eventually(
            lambda: _assert(cluster.condition(BUDGET, "ApplyFailed")["status"] == "False")
        )
        assert cluster.condition(BUDGET, "Ready")["status"] == "True"
        await assert_burst_within(budget_postgres, fleet, 21, "after a refusing pod recovered")


async def test_postgres_unreachable_changes_nothing_and_says_so(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    from devstack.servers import free_port

    closed = free_port()
    await seed(cluster, fleet, budget_postgres, replicas=2, postgres_port=closed)
    async with operator_running(cluster):
        await eventually(
            lambda: _assert(cluster.condition(BUDGET, "Ready")["reason"] == "PostgresUnreachable")
        )
        ready = cluster.condition(BUDGET, "Ready")
        assert ready["status"] == "False"
        assert f":{closed}" in ready["message"]
        assert "nothing changed" in ready["message"]
        assert cluster.condition(BUDGET, "WithinBudget")["status"] == "Unknown"
        # A scale-out meanwhile: still nothing changes (maxConnections: auto needs Postgres).
        await cluster.hpa_desires("api", 6)
        await asyncio.sleep(1.5)
        assert [await pool_size(pod) for pod in fleet.running()] == [5, 5]
        assert cluster.config_map_data("api-pool")["pool.ini"] == "default_pool_size = 5\n"
        assert "allocated" not in cluster.status(BUDGET)
        await eventually(lambda: _assert(_event(cluster, "ReadyFalse")["type"] == "Warning"))
        # Postgres reachable again (the Secret fixed): applied on the next retry.
        await cluster.change_secret("postgres", {"port": str(budget_postgres.port)})
        # 6 + 2 = 8 pods, 31 // 8 = 3.
        await wait_for_pool_sizes(fleet.running(), 3)
        await eventually(lambda: _assert(cluster.condition(BUDGET, "Ready")["status"] == "True"))


async def test_a_budget_too_small_keeps_the_minimums_and_raises_a_condition_and_an_event(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    # Budget 37 - 30 - 2 = 5; 4 + 1 surge = 5 pods at a minimum of 2 need 10.
    await seed(cluster, fleet, budget_postgres, replicas=4, reserve=30, pooled={"minPoolSize": 2})
    async with operator_running(cluster):
        await eventually(
            lambda: _assert(cluster.condition(BUDGET, "WithinBudget")["status"] == "False")
        )
        within = cluster.condition(BUDGET, "WithinBudget")
        assert within["reason"] == "BudgetTooSmall"
        assert "need 10 connections, the budget is 5" in within["message"]
        hpa = cluster.condition(BUDGET, "HPAMaxExceedsBudget")
        assert hpa["status"] == "True"
        assert "maxReplicas 12 > 1 the budget allows" in hpa["message"]
        await wait_for_pool_sizes(fleet.running(), 2)
        assert configmap_pool(cluster) == 2
        status = cluster.status(BUDGET)
        assert (status["budget"], status["allocated"]) == (5, 10)
        await eventually(lambda: _assert(_event(cluster, "WithinBudgetFalse")["type"] == "Warning"))
        assert _event(cluster, "HPAMaxExceedsBudgetTrue")["type"] == "Warning"
        # Reported, not hidden: Postgres still has room for the minimums it was given.
        await assert_burst_within(budget_postgres, fleet, 8, "budget too small, 4 pods at 2")


async def test_a_spec_change_is_applied_at_once_and_the_liveness_endpoint_answers(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    import httpx

    from devstack.servers import free_port

    await seed(cluster, fleet, budget_postgres, replicas=2)
    settings = OperatorSettings(
        namespace="shop", retry_interval_s=0.5, health_addr="127.0.0.1", health_port=free_port()
    )
    async with operator_running(cluster, settings, liveness=True):
        await wait_for_pool_sizes(fleet.running(), 10)
        started = time.monotonic()
        # A lower maximum and a ConfigMap of a new name, which the operator creates.
        changed = spec(
            fleet,
            pooled={
                "maxPoolSize": 6,
                "pgbouncer": {
                    "port": fleet.port,
                    "adminSecretRef": {"name": "pool-admin"},
                    "configMap": "api-pool-v2",
                },
            },
        )
        await cluster.change_budget(BUDGET, changed, generation=2)
        await wait_for_pool_sizes(fleet.running(), 6)
        FIGURES["spec change to every pool"] = f"{time.monotonic() - started:.2f} s"
        await eventually(lambda: _assert(cluster.status(BUDGET)["observedGeneration"] == 2))
        created = cluster.emulator.objects["v1/configmaps", "shop", "api-pool-v2"]
        assert created["data"]["pool.ini"] == "default_pool_size = 6\nmax_db_connections = 6\n"
        assert created["metadata"]["ownerReferences"][0]["kind"] == "ConnectionBudget"
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.get(f"http://127.0.0.1:{settings.health_port}/healthz")
        assert response.status_code == 200


async def test_a_budget_carries_no_finalizer_and_its_deletion_stops_its_loop(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    from prometheus_client import REGISTRY

    labels = {"budget": f"shop/{BUDGET}", "consumer": "api"}
    await seed(cluster, fleet, budget_postgres, replicas=1)
    async with operator_running(cluster):
        await wait_for_pool_sizes(fleet.running(), 10)
        await eventually(
            lambda: _assert(REGISTRY.get_sample_value("stampede_operator_pool_size", labels) == 10)
        )
        # No finalizer: nothing holds the budget when the operator is gone first.
        obj = cluster.emulator.objects["stampede.dev/v1alpha1/connectionbudgets", "shop", BUDGET]
        assert not obj["metadata"].get("finalizers")
        assert not obj["metadata"].get("annotations")
        await cluster.delete_budget(BUDGET)
        assert not cluster.budget_exists(BUDGET)
        await eventually(
            lambda: _assert(
                REGISTRY.get_sample_value("stampede_operator_pool_size", labels) is None
            )
        )
        # The pools keep their last size, and the loop is gone: a scale-out changes nothing.
        await cluster.hpa_desires("api", 6)
        await asyncio.sleep(1)
        assert [await pool_size(pod) for pod in fleet.running()] == [10]


async def test_an_operator_named_for_one_budget_leaves_another_releases_alone(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    await seed(cluster, fleet, budget_postgres, replicas=1)
    # Another release's budget in the same namespace, naming the same pods: were it
    # reconciled, it would shrink them to its own maximum.
    await cluster.budget("other", spec(fleet, pooled={"maxPoolSize": 3}))
    settings = OperatorSettings(namespace="shop", retry_interval_s=0.5, budget_name=BUDGET)
    async with operator_running(cluster, settings):
        await wait_for_pool_sizes(fleet.running(), 10)
        await eventually(lambda: _assert(cluster.condition(BUDGET, "Ready")["status"] == "True"))
        await asyncio.sleep(1)
        assert cluster.status("other") == {}
        assert [await pool_size(pod) for pod in fleet.running()] == [10]


async def test_a_spec_the_operator_cannot_use_is_reported_and_changes_nothing(
    cluster: EmulatedCluster, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    # The CRD's schema cannot say minPoolSize <= maxPoolSize; the operator can.
    await seed(
        cluster, fleet, budget_postgres, replicas=1, pooled={"minPoolSize": 8, "maxPoolSize": 4}
    )
    async with operator_running(cluster):
        await eventually(
            lambda: _assert(cluster.condition(BUDGET, "Ready")["reason"] == "InvalidSpec")
        )
        assert "minPoolSize exceeds maxPoolSize" in cluster.condition(BUDGET, "Ready")["message"]
        await eventually(lambda: _assert(_event(cluster, "InvalidSpec")["type"] == "Warning"))
        assert [await pool_size(pod) for pod in fleet.running()] == [5]
        # Fixed: the next generation is applied at once.
        await cluster.change_budget(BUDGET, spec(fleet), generation=2)
        await wait_for_pool_sizes(fleet.running(), 10)
        await eventually(lambda: _assert(cluster.condition(BUDGET, "Ready")["status"] == "True"))


def test_the_rbac_rules_are_exactly_the_calls_the_operator_made() -> None:
    """services/operator/rbac.py (which the chart's Role is checked against) lists every
    call the scenarios above made, and nothing they did not."""
    scenarios = {
        name
        for name, obj in globals().items()
        if name.startswith("test_")
        and callable(obj)
        and name != "test_the_rbac_rules_are_exactly_the_calls_the_operator_made"
    }
    if not scenarios <= SCENARIOS_RUN:
        pytest.skip(
            f"needs every scenario of this module; not run: {sorted(scenarios - SCENARIOS_RUN)}"
        )
    required = {
        (group, resource, verb)
        for rule in REQUIRED_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert required == CALLS
