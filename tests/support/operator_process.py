"""``python -m services.operator --budget-file`` as a real process: the local stack's
operator, for tests that need its metrics served (a Prometheus scraping it, the
dashboards' operator panels)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from devstack.servers import free_port
from devstack.stack import BUDGET_FILE
from tests.support.endpoints import APP_DB, APP_PASSWORD, APP_USER, DatabaseEndpoint
from tests.support.processes import Process


@contextmanager
def standalone_operator(
    workdir: Path, postgres: DatabaseEndpoint, pgbouncer: DatabaseEndpoint
) -> Iterator[int]:
    """The stack's budget file pointed at ``postgres`` and ``pgbouncer`` (whose app user is
    an admin of its console, as in the local stack); yields the metrics port once the
    first reconcile has applied."""
    workdir.mkdir(parents=True, exist_ok=True)
    budget = yaml.safe_load(BUDGET_FILE.read_text())
    budget["spec"]["pooled"][0]["pgbouncer"]["port"] = pgbouncer.port
    budget["local"]["postgres"] |= {"host": postgres.host, "port": postgres.port}
    budget["local"]["postgres"] |= {"database": APP_DB, "username": APP_USER}
    budget["local"]["postgres"]["password"] = APP_PASSWORD
    api = budget["local"]["pooled"]["api"]
    api["pods"] = [f"{pgbouncer.host}:{pgbouncer.port}"]
    api["admin"] = {"username": pgbouncer.user, "password": pgbouncer.password}
    api["poolFile"] = str(workdir / "pool.ini")
    path = workdir / "connection-budget.yaml"
    path.write_text(yaml.safe_dump(budget))
    port = free_port()
    process = Process(
        "operator",
        [sys.executable, "-m", "services.operator", "--budget-file", str(path)],
        {
            "STAMPEDE_OPERATOR_METRICS_PORT": str(port),
            "STAMPEDE_OPERATOR_METRICS_ADDR": "127.0.0.1",
        },
        workdir / "operator.log",
    )
    try:
        process.wait_for_output("ReadyTrue", timeout=30)
        yield port
    finally:
        process.stop()
