"""The local stack's mode: one budget file instead of the Kubernetes API, against a real
PgBouncer and Postgres; the repository's own budget file is valid."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from devstack import stack
from services.operator.spec import BudgetSpec
from services.operator.standalone import BudgetFile, reconcile_file, run_standalone
from tests.support.crd import validate
from tests.support.endpoints import APP_DB, APP_PASSWORD, APP_USER, DatabaseEndpoint
from tests.support.operator_pods import PodFleet, wait_for_pool_sizes
from tests.support.sidecar_pgbouncer import OPERATOR_ADMIN, OPERATOR_ADMIN_PASSWORD


def budget_file(
    path: Path, postgres: DatabaseEndpoint, fleet: PodFleet, replicas: int, max_pool: int
) -> dict[str, Any]:
    doc = yaml.safe_load(stack.BUDGET_FILE.read_text())
    doc["metadata"]["name"] = path.stem
    doc["spec"]["pooled"][0]["maxPoolSize"] = max_pool
    doc["local"] = {
        "postgres": {
            "host": postgres.host,
            "port": postgres.port,
            "database": APP_DB,
            "username": APP_USER,
            "password": APP_PASSWORD,
        },
        "pooled": {
            "api": {
                "replicas": replicas,
                "pods": [f"{pod.address}:{fleet.port}" for pod in fleet.running()],
                "admin": {"username": OPERATOR_ADMIN, "password": OPERATOR_ADMIN_PASSWORD},
                "poolFile": str(fleet.pool_file("pod-1")),
            }
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return doc


def test_the_stacks_budget_file_is_a_valid_connection_budget() -> None:
    budget = BudgetFile.load(stack.BUDGET_FILE)
    validate(
        {
            "apiVersion": budget.api_version,
            "kind": budget.kind,
            "metadata": budget.metadata,
            "spec": budget.spec,
        }
    )
    spec = BudgetSpec.parse(budget.spec)
    assert spec.pooled[0].pgbouncer.port == stack.PGBOUNCER_PORT
    assert budget.local.postgres.port == stack.POSTGRES_PORT
    assert budget.local.pooled["api"].pool_file == stack.POOL_FILE.relative_to(stack.REPO)


async def test_a_budget_file_is_reconciled_into_the_pool_file_and_the_live_pgbouncer(
    tmp_path: Path, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    await asyncio.to_thread(fleet.start, "pod-1", 5)
    path = tmp_path / "budget-a.yaml"
    budget_file(path, budget_postgres, fleet, replicas=1, max_pool=12)
    # 40 - 3 = 37; reserve 20, fixed 8: 9 for one pod.
    result, _ = await reconcile_file(path, {})
    assert (result.status["budget"], result.status["allocated"]) == (9, 9)
    assert fleet.pool_file("pod-1").read_text() == "default_pool_size = 9\nmax_db_connections = 9\n"
    await wait_for_pool_sizes(fleet.running(), 9, within_s=1)
    labels = {"budget": "local/budget-a", "consumer": "api"}
    assert REGISTRY.get_sample_value("stampede_operator_pool_size", labels) == 9


async def test_the_standalone_loop_follows_a_changed_file(
    tmp_path: Path, fleet: PodFleet, budget_postgres: DatabaseEndpoint
) -> None:
    await asyncio.to_thread(fleet.start, "pod-1", 5)
    path, status_file = tmp_path / "budget-b.yaml", tmp_path / "status.yaml"
    doc = budget_file(path, budget_postgres, fleet, replicas=1, max_pool=6)
    stop = asyncio.Event()
    loop = asyncio.create_task(run_standalone(path, 0.5, status_file, stop))
    try:
        await wait_for_pool_sizes(fleet.running(), 6)
        doc["spec"]["pooled"][0]["maxPoolSize"] = 5
        path.write_text(yaml.safe_dump(doc))
        await wait_for_pool_sizes(fleet.running(), 5)
        status = yaml.safe_load(status_file.read_text())
        assert status["consumers"][0]["poolSizePerPod"] == 5
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=5)


def test_the_operator_process_serves_its_metrics(
    tmp_path: Path, budget_postgres: DatabaseEndpoint, fleet: PodFleet
) -> None:
    """As `make up` runs it: a process reconciling a budget file, its metrics over HTTP."""
    import httpx

    from tests.support.endpoints import DatabaseEndpoint as Endpoint
    from tests.support.operator_process import standalone_operator
    from tests.support.sidecar_pgbouncer import OPERATOR_ADMIN, OPERATOR_ADMIN_PASSWORD

    pod = fleet.start("pod-1", 5)
    pgbouncer = Endpoint(
        pod.address,
        fleet.port,
        pod.pgbouncer.process,
        user=OPERATOR_ADMIN,  # type: ignore[arg-type]
        password=OPERATOR_ADMIN_PASSWORD,
    )
    with standalone_operator(tmp_path / "operator", budget_postgres, pgbouncer) as port:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text
    # Postgres 40 - 3 = 37, reserve 20, fixed 8: 9 for the one pod.
    assert 'stampede_operator_pool_size{budget="local/stampede",consumer="api"} 9.0' in text
    assert 'stampede_operator_condition{budget="local/stampede",condition="Ready"} 1.0' in text
