"""A monitored stack: gunicorn, the Celery worker and relay, the ConnectionBudget operator
(its local mode, on the PgBouncer the api uses), the exporters and a Prometheus, run as the
local stack runs them."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import yaml

from devstack.monitoring import (
    PgBouncerExporter,
    PostgresExporter,
    PrometheusServer,
    RedisExporter,
    Target,
)
from devstack.servers import free_port, start
from devstack.stack import RELAY_COMMAND, WORKER_COMMAND
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint
from tests.support.gunicorn import run_gunicorn
from tests.support.monitoring import Monitored
from tests.support.pgbouncer_admin import config as pgbouncer_config
from tests.support.processes import BrokerRedis, Process
from tests.support.smtp import SmtpServer

RULES = Path(__file__).resolve().parents[2] / "charts" / "stampede" / "files" / "alerts.rules.yaml"


# Module scope: its relay and worker act on the shared test database, so they must be
# gone before other modules' tests (the worker's own) run.
@pytest.fixture(scope="module")
def monitored(
    tmp_path_factory: pytest.TempPathFactory,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("monitoring")
    root.chmod(0o755)
    broker = BrokerRedis(root / "redis-broker")
    smtp = SmtpServer(free_port())
    worker_port, relay_port = free_port(), free_port()
    worker_env = {
        "STAMPEDE_PROFILE": "prod",
        "STAMPEDE_DB__URL": pgbouncer_server.url,
        "STAMPEDE_REDIS__CACHE_URL": cache_redis_server.url,
        "STAMPEDE_BROKER__URL": broker.url,
        "STAMPEDE_SMTP__HOST": smtp.host,
        "STAMPEDE_SMTP__PORT": str(smtp.port),
        "STAMPEDE_SMTP__SECURITY": "none",
        "STAMPEDE_RELAY__LISTEN_URL": migrated_postgres.url,
        "STAMPEDE_RELAY__POLL_INTERVAL_S": "0.5",
        "STAMPEDE_RELAY__METRICS_PORT": str(relay_port),
        "STAMPEDE_RELAY__HEARTBEAT_FILE": str(root / "relay.heartbeat"),
        "STAMPEDE_WORKER__METRICS_PORT": str(worker_port),
        "STAMPEDE_WORKER__METRICS_MULTIPROC_DIR": str(root / "worker-metrics"),
    }
    exporters = [
        RedisExporter(root / "redis-exporter", free_port(), cache_redis_server.port, "cache"),
        RedisExporter(root / "broker-exporter", free_port(), broker.server.port, "broker"),
        PostgresExporter(root / "postgres-exporter", free_port(), migrated_postgres.dsn),
        PgBouncerExporter(
            root / "pgbouncer-exporter",
            free_port(),
            pgbouncer_server.port,
            pgbouncer_server.user,
            pgbouncer_server.password,
        ),
    ]
    with ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        smtp.start()
        stack.callback(smtp.stop)
        worker = Process("worker", [*WORKER_COMMAND, "-n", "obs@%h"], worker_env, root / "w.log")
        stack.callback(worker.stop)
        relay = Process("relay", RELAY_COMMAND, worker_env, root / "relay.log")
        stack.callback(relay.stop)
        worker.wait_for_output(" ready.", timeout=60)
        relay.wait_for_output("relay started", timeout=60)
        api = stack.enter_context(
            run_gunicorn(
                root / "api", database_url=pgbouncer_server.url, cache_url=cache_redis_server.url
            )
        )
        for exporter in exporters:
            stack.enter_context(start(exporter)).wait_ready(timeout=30)
        operator_port = free_port()
        operator = Process(
            "operator",
            [
                *(sys.executable, "-m", "services.operator"),
                *("--budget-file", str(_budget_file(root, migrated_postgres, pgbouncer_server))),
            ],
            {
                "STAMPEDE_OPERATOR_METRICS_ADDR": "127.0.0.1",
                "STAMPEDE_OPERATOR_METRICS_PORT": str(operator_port),
                "STAMPEDE_OPERATOR_HEALTH_ADDR": "127.0.0.1",
                "STAMPEDE_OPERATOR_HEALTH_PORT": str(free_port()),
            },
            root / "operator.log",
        )
        stack.callback(operator.stop)
        _wait_for_reconcile(operator_port, operator)
        prometheus = PrometheusServer(
            workdir=root / "prometheus",
            port=free_port(),
            targets=(
                Target(component="api", port=api.metrics_port),
                Target(component="worker", port=worker_port),
                Target(component="relay", port=relay_port),
                Target(component="operator", port=operator_port),
                *(exporter.target for exporter in exporters),
            ),
            rule_files=(RULES,),
            scrape_interval="1s",
        )
        stack.enter_context(start(prometheus)).wait_ready(timeout=30)
        monitored = Monitored(api=api, prometheus_url=prometheus.url, smtp=smtp)
        _wait_for_targets(monitored, expected=4 + len(exporters))
        yield monitored


def _wait_for_targets(monitored: Monitored, expected: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        up = monitored.query("up == 1")
        if len(up) == expected:
            return
        assert time.monotonic() < deadline, monitored.query("up")
        time.sleep(0.5)


def _budget_file(root: Path, postgres: DatabaseEndpoint, pgbouncer: DatabaseEndpoint) -> Path:
    """The local stack's kind of ConnectionBudget: the api's one PgBouncer as its pooled
    consumer. Its pool is pinned to the size that PgBouncer already has (min = max): the
    operator reconciles and pushes for real, and the other tests' pooler stays as it is."""
    size = int(pgbouncer_config(pgbouncer)["default_pool_size"])
    workdir = root / "operator"
    workdir.mkdir()
    budget = {
        "apiVersion": "stampede.dev/v1alpha1",
        "kind": "ConnectionBudget",
        "metadata": {"name": "stampede", "namespace": "local"},
        "spec": {
            "postgres": {"secretRef": {"name": "local"}, "maxConnections": "auto"},
            "reserve": 10,
            "pooled": [
                {
                    "name": "api",
                    "deployment": "api",
                    "minPoolSize": size,
                    "maxPoolSize": size,
                    "role": pgbouncer.user,
                    "pgbouncer": {
                        "port": pgbouncer.port,
                        "adminSecretRef": {"name": "local"},
                        "configMap": "local",
                    },
                }
            ],
            "fixed": [{"name": "worker", "connectionsPerPod": 2}],
        },
        "local": {
            "postgres": {
                "host": postgres.host,
                "port": postgres.port,
                "database": postgres.database,
                "username": postgres.user,
                "password": postgres.password,
            },
            "pooled": {
                "api": {
                    "replicas": 1,
                    "pods": [f"{pgbouncer.host}:{pgbouncer.port}"],
                    # The test PgBouncer's app role is one of its admin_users.
                    "admin": {"username": pgbouncer.user, "password": pgbouncer.password},
                    "poolFile": str(workdir / "pool.ini"),
                }
            },
            "fixed": {"worker": {"replicas": 1}},
        },
    }
    path = workdir / "budget.yaml"
    path.write_text(yaml.safe_dump(budget, sort_keys=False))
    return path


def _wait_for_reconcile(port: int, operator: Process) -> None:
    """Until the operator's metrics show a reconciled budget."""
    deadline = time.monotonic() + 60
    while True:
        try:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            if "stampede_operator_budget_connections{" in metrics:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the operator never reconciled:\n" + operator.output()
        time.sleep(0.5)
