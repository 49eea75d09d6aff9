"""A monitored api: gunicorn, the exporters and a Prometheus, as the local stack runs them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.devstack.monitoring import (
    PgBouncerExporter,
    PostgresExporter,
    PrometheusServer,
    RedisExporter,
    Target,
)
from services.devstack.servers import free_port, start
from tests.conftest import DatabaseEndpoint, RedisEndpoint
from tests.gunicorn import Gunicorn, run_gunicorn

RULES = Path(__file__).resolve().parents[2] / "charts" / "stampede" / "files" / "alerts.rules.yaml"


@dataclass(frozen=True)
class Monitored:
    api: Gunicorn
    prometheus_url: str

    def query(self, expr: str) -> list[dict[str, object]]:
        response = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def label_values(self, label: str, selector: str) -> list[str]:
        response = httpx.get(
            f"{self.prometheus_url}/api/v1/label/{label}/values", params={"match[]": selector}
        )
        values: list[str] = response.json()["data"]
        return values


@pytest.fixture(scope="session")
def monitored(
    tmp_path_factory: pytest.TempPathFactory,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("monitoring")
    exporters = [
        RedisExporter(root / "redis-exporter", free_port(), cache_redis_server.port, "cache"),
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
        api = stack.enter_context(
            run_gunicorn(
                root / "api", database_url=pgbouncer_server.url, cache_url=cache_redis_server.url
            )
        )
        for exporter in exporters:
            stack.enter_context(start(exporter)).wait_ready(timeout=30)
        prometheus = PrometheusServer(
            workdir=root / "prometheus",
            port=free_port(),
            targets=(
                Target(component="api", port=api.metrics_port),
                *(exporter.target for exporter in exporters),
            ),
            rule_files=(RULES,),
            scrape_interval="1s",
        )
        stack.enter_context(start(prometheus)).wait_ready(timeout=30)
        monitored = Monitored(api=api, prometheus_url=prometheus.url)
        _wait_for_targets(monitored, expected=1 + len(exporters))
        yield monitored


def _wait_for_targets(monitored: Monitored, expected: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        up = monitored.query("up == 1")
        if len(up) == expected:
            return
        assert time.monotonic() < deadline, monitored.query("up")
        time.sleep(0.5)
