"""Exporters and Prometheus, run the way the chart runs them.

The exporters are the same software the chart runs as sidecars: Debian's
``prometheus-redis-exporter`` (oliver006/redis_exporter) and
``prometheus-postgres-exporter`` (prometheus-community/postgres_exporter), and
spreaker's ``prometheus-pgbouncer-exporter`` from PyPI. (Debian's package of that name is
a different exporter whose 1.7 release crashes on PgBouncer >= 1.8's ``SHOW STATS``.)

Every target carries the labels the chart's ServiceMonitors attach (``namespace``,
``release``, ``component``, ``job``), so a dashboard query proven against the local
Prometheus is the query that runs in the cluster.
"""

from __future__ import annotations

import json
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from devstack.host import LOCALHOST, accepts_tcp, own

LOCAL_NAMESPACE = "local"
RELEASE = "stampede"


def _tool(name: str, *extra_dirs: Path) -> str:
    search = ":".join([*(str(d) for d in extra_dirs), "/usr/bin", "/usr/sbin", "/usr/local/bin"])
    found = shutil.which(name) or shutil.which(name, path=search)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (run `make deps`)")
    return found


# Where install-deps.sh puts the PgBouncer exporter's own virtualenv (its pinned
# dependencies cannot live in the app's).
PGBOUNCER_EXPORTER_VENV = Path(__file__).resolve().parents[1] / ".cache" / "pgbouncer-exporter"


@dataclass(frozen=True)
class Target:
    """One scrape target and the labels the chart's ServiceMonitor would give it."""

    component: str
    port: int
    endpoint: str = "metrics"

    @property
    def job(self) -> str:
        return f"{RELEASE}-{self.component}"


@dataclass(frozen=True)
class RedisExporter:
    workdir: Path
    port: int
    redis_port: int
    role: str  # "cache" or "broker": the component it reports for

    run_as: str | None = None
    stop_signal = signal.SIGTERM

    @property
    def name(self) -> str:
        return f"redis-{self.role}-exporter"

    @property
    def target(self) -> Target:
        return Target(component=self.role, port=self.port)

    def prepare(self) -> None:
        own(self.workdir, self.run_as)

    def command(self) -> list[str]:
        return [
            _tool("prometheus-redis-exporter"),
            f"-redis.addr=redis://{LOCALHOST}:{self.redis_port}",
            f"-web.listen-address={LOCALHOST}:{self.port}",
        ]

    def is_ready(self) -> bool:
        return accepts_tcp(self.port)


@dataclass(frozen=True)
class PostgresExporter:
    workdir: Path
    port: int
    dsn: str  # postgresql://user:password@host:port/db

    run_as: str | None = None
    stop_signal = signal.SIGTERM
    name = "postgres-exporter"

    @property
    def target(self) -> Target:
        return Target(component="postgres-exporter", port=self.port)

    def prepare(self) -> None:
        own(self.workdir, self.run_as)

    def command(self) -> list[str]:
        # postgres_exporter 0.11 takes its connection only from DATA_SOURCE_NAME; `env`
        # sets it for both supervisord and plain subprocesses (local credentials only).
        return [
            "/usr/bin/env",
            f"DATA_SOURCE_NAME={self.dsn}?sslmode=disable",
            _tool("prometheus-postgres-exporter"),
            f"--web.listen-address={LOCALHOST}:{self.port}",
        ]

    def is_ready(self) -> bool:
        return accepts_tcp(self.port)


@dataclass(frozen=True)
class PgBouncerExporter:
    workdir: Path
    port: int
    pgbouncer_port: int
    user: str
    password: str
    venv: Path = PGBOUNCER_EXPORTER_VENV

    run_as: str | None = None
    stop_signal = signal.SIGTERM
    name = "pgbouncer-exporter"

    @property
    def target(self) -> Target:
        # In the cluster it is a sidecar of the api pod, scraped by the api's
        # ServiceMonitor on its own endpoint.
        return Target(component="api", port=self.port, endpoint="pgbouncer-mx")

    @property
    def config_path(self) -> Path:
        return self.workdir / "pgbouncer-exporter.yml"

    def prepare(self) -> None:
        own(self.workdir, self.run_as)
        dsn = (
            f"postgresql://{self.user}:{self.password}@{LOCALHOST}:{self.pgbouncer_port}/pgbouncer"
        )
        config = {
            "exporter_host": LOCALHOST,
            "exporter_port": self.port,
            "pgbouncers": [{"dsn": dsn, "connect_timeout": 2, "exclude_databases": ["pgbouncer"]}],
        }
        self.config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.config_path.chmod(0o600)

    def command(self) -> list[str]:
        return [_tool("pgbouncer-exporter", self.venv / "bin"), "--config", str(self.config_path)]

    def is_ready(self) -> bool:
        return accepts_tcp(self.port)


@dataclass(frozen=True)
class PrometheusServer:
    """Prometheus scraping ``targets`` and evaluating ``rule_files``."""

    workdir: Path
    port: int
    targets: tuple[Target, ...]
    rule_files: tuple[Path, ...] = ()
    scrape_interval: str = "5s"
    retention: str = "7d"

    run_as: str | None = None
    stop_signal = signal.SIGTERM
    name = "prometheus"
    external_labels: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def config(self) -> dict[str, object]:
        jobs: dict[str, list[Target]] = {}
        for target in self.targets:
            jobs.setdefault(target.job, []).append(target)
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
                "external_labels": self.external_labels,
            },
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [
                        {
                            "targets": [f"{LOCALHOST}:{target.port}"],
                            "labels": {
                                "namespace": LOCAL_NAMESPACE,
                                "release": RELEASE,
                                "component": target.component,
                                "service": job,
                                "endpoint": target.endpoint,
                            },
                        }
                        for target in members
                    ],
                }
                for job, members in jobs.items()
            ],
        }

    def prepare(self) -> None:
        own(self.workdir / "data", self.run_as)
        self.config_path.write_text(json.dumps(self.config(), indent=2))

    def command(self) -> list[str]:
        return [
            _tool("prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={LOCALHOST}:{self.port}",
        ]

    def is_ready(self) -> bool:
        return accepts_tcp(self.port)
