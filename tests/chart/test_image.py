"""The Dockerfile's three images, built with podman and run as the chart runs them.

Opt-in (``make image-test``): building takes minutes, and it needs podman, debootstrap
and runc (``devstack/release/install-podman.sh``). Each container gets its command, env,
volumes and security settings from the chart rendered by helm — read-only root
filesystem, emptyDirs as tmpfs, ConfigMap files, no capabilities, the image's own user —
with the host's network standing in for the pod's, and real throwaway Postgres and Redis
servers standing in for the cluster's. Only the Redis Service names are rewritten to
their local ports; everything else points at them through chart values.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from devstack.pgbouncer_builds import PGBOUNCER_VERSION
from devstack.release import podman as podman_module
from devstack.release.podman import TARGETS, Podman, Target
from devstack.servers import RedisServer, free_port, start
from tests.support.chart import RELEASE, Doc, Helm, containers, pod_spec
from tests.support.endpoints import APP_PASSWORD, APP_USER, DatabaseEndpoint, RedisEndpoint

IMAGE_DB = "stampede_image"
ENABLED = os.environ.get("STAMPEDE_IMAGE_TESTS") == "1"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ENABLED,
        reason="image builds take minutes: set STAMPEDE_IMAGE_TESTS=1 (make image-test)",
    ),
]
REPORT = podman_module.CACHE / "image-report.txt"


@pytest.fixture(scope="module")
def podman() -> Podman:
    reason = podman_module.unusable_reason()
    if reason is not None:
        pytest.skip(f"podman is not usable here: {reason}")
    return Podman()


@pytest.fixture(scope="module")
def images(podman: Podman) -> dict[str, Target]:
    """Every target built (layers cached between runs); sizes and times go to REPORT."""
    lines = []
    for target in TARGETS:
        seconds = podman.build(target)
        size = podman.image_size(target.tag) / 1e6
        lines.append(f"{target.name:20} {target.tag:45} {size:5.0f} MB  built in {seconds:4.0f} s")
    REPORT.write_text("\n".join(lines) + "\n")
    return {target.name: target for target in TARGETS}


@dataclass(frozen=True)
class Ports:
    pgbouncer: int
    exporter: int
    api: int
    api_metrics: int
    worker_metrics: int
    relay_metrics: int


@pytest.fixture(scope="module")
def broker_redis(servers_dir: Path) -> Iterator[RedisEndpoint]:
    server = RedisServer(workdir=servers_dir / "image-broker", port=free_port(), role="broker")
    with start(server) as process:
        process.wait_ready()
        yield RedisEndpoint("127.0.0.1", server.port, process)


@pytest.fixture(scope="module")
def image_db(postgres_server: DatabaseEndpoint) -> str:
    """A database of its own, empty: the migrations Job must build every table."""
    assert postgres_server.admin is not None
    postgres_server.admin.bootstrap(APP_USER, APP_PASSWORD, IMAGE_DB)
    return IMAGE_DB


@dataclass(frozen=True)
class Chart:
    """The rendered chart and how to run its containers in our images."""

    docs: list[Doc]
    ports: Ports
    rewrites: dict[str, str]  # Service host:port -> local host:port
    files: Path  # the PgBouncer ConfigMap's files

    def doc(self, kind: str, suffix: str) -> Doc:
        [found] = [
            d for d in self.docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)
        ]
        return found

    def container(self, workload: Doc, name: str) -> Doc:
        [found] = [c for _, c in containers(workload) if c["name"] == name]
        return found

    def env(self, container: Doc) -> dict[str, str]:
        """The container's environment as the kubelet would build it."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            name = source["configMapRef"]["name"]
            [config] = [
                d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name
            ]
            env.update(config["data"])
        for item in container.get("env", []):
            if "value" in item:
                value = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                [secret] = [
                    d
                    for d in self.docs
                    if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]
                ]
                value = secret_value(secret, ref["key"])
            # Kubernetes' dependent variables: $(NAME) of an earlier entry.
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
            for old, new in self.rewrites.items():
                value = value.replace(old, new)
            env[item["name"]] = value
        return env

    def options(self, workload: Doc, container: Doc) -> list[str]:
        """podman run options for ``container``: the pod's volumes and security settings."""
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context["allowPrivilegeEscalation"] is False
        options = ["--network=host", "--read-only", "--read-only-tmpfs=false"]
        options += ["--cap-drop=ALL", "--security-opt=no-new-privileges"]
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                # Writable by the pod's fsGroup in Kubernetes; by everyone here.
                options.append(f"--tmpfs={mount['mountPath']}:rw,mode=1777")
            elif "configMap" in volume:
                options.append(f"--volume={self.files}:{mount['mountPath']}:ro")
            else:
                raise AssertionError(f"no stand-in for volume {volume}")
        for key, value in self.env(container).items():
            options += ["--env", f"{key}={value}"]
        return options


def secret_value(secret: Doc, key: str) -> str:
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    return base64.b64decode(secret["data"][key]).decode()


@pytest.fixture(scope="module")
def chart(
    helm: Helm,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: DatabaseEndpoint,
    image_db: str,
    cache_redis_server: RedisEndpoint,
    broker_redis: RedisEndpoint,
) -> Chart:
    ports = Ports(*(free_port() for _ in range(6)))
    docs = helm.template(
        set_values={
            "postgresql.enabled": "false",
            "externalDatabase.host": "127.0.0.1",
            "externalDatabase.port": str(postgres_server.port),
            "externalDatabase.database": image_db,
            "externalDatabase.username": APP_USER,
            "externalDatabase.password": APP_PASSWORD,
            "externalDatabase.sslMode": "disable",
            "pgbouncer.port": str(ports.pgbouncer),
            # The images' own behaviour: a static pool. The operator's pool file and admin
            # user are run in test_pgbouncer_sidecar and, in pods, in tests/chart/pods.
            "operator.enabled": "false",
            "pgbouncer.defaultPoolSize": "2",
            "metrics.pgbouncerExporter.port": str(ports.exporter),
            "api.containerPort": str(ports.api),
            "api.metricsPort": str(ports.api_metrics),
            "api.workers": "1",
            "worker.metricsPort": str(ports.worker_metrics),
            "relay.metricsPort": str(ports.relay_metrics),
            "cache.auth.enabled": "false",
            "broker.auth.enabled": "false",
        }
    )
    files = tmp_path_factory.mktemp("pgbouncer-configmap")
    files.chmod(0o755)
    [config] = [d for d in docs if d["kind"] == "ConfigMap" and "pgbouncer.ini" in d["data"]]
    for name, text in config["data"].items():
        (files / name).write_text(text)
        (files / name).chmod(0o644)
    rewrites = {
        f"{RELEASE}-cache:6379": f"127.0.0.1:{cache_redis_server.port}",
        f"{RELEASE}-broker:6379": f"127.0.0.1:{broker_redis.port}",
    }
    return Chart(docs, ports, rewrites, files)


class Container:
    """A detached ``podman run``; its output goes to a log file."""

    def __init__(self, podman: Podman, name: str, argv: list[str], log: Path):
        self.podman, self.name, self.log = podman, name, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no {what} after {timeout} s:\n{self.output()}")
            time.sleep(0.25)

    def stop(self) -> int:
        """SIGTERM as the kubelet sends it; the exit code."""
        self.podman.run("stop", "--time", "30", self.name, check=False, timeout=60)
        return self.process.wait(60)


@pytest.fixture(scope="module")
def run_container(
    podman: Podman,
    chart: Chart,
    images: dict[str, Target],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str, str, str], Container]]:
    """Start the chart's ``container`` of workload ``suffix`` in image ``target``."""
    logs = tmp_path_factory.mktemp("container-logs")
    started: list[Container] = []

    def run(target: str, suffix: str, name: str) -> Container:
        kind = "Job" if suffix.startswith("migrations") else "Deployment"
        workload = chart.doc(kind, suffix)
        spec = chart.container(workload, name)
        container_name = f"stampede-image-{name}-{os.getpid()}"
        options = [f"--name={container_name}", *chart.options(workload, spec)]
        if "command" in spec:
            options.append(f"--entrypoint={json.dumps(spec['command'])}")
        argv = podman.container_argv(images[target].tag, *spec.get("args", []), options=options)
        container = Container(podman, container_name, argv, logs / f"{name}.log")
        started.append(container)
        return container

    yield run
    for container in started:
        if container.process.poll() is None:
            container.stop()


@pytest.mark.parametrize("target", [t.name for t in TARGETS])
def test_image_runs_as_uid_10001_on_a_read_only_root(
    podman: Podman, images: dict[str, Target], target: str
) -> None:
    # The chart's runAsUser; numeric, so runAsNonRoot can verify it.
    tag = images[target].tag
    assert podman.image_user(tag) == "10001:10001"
    argv = podman.container_argv(
        tag,
        "-c",
        "id -u; touch /tmp/x; touch /x 2>/dev/null && echo writable-root || true",
        options=["--read-only", "--read-only-tmpfs=false", "--tmpfs=/tmp", "--entrypoint=sh"],
    )
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10001"], result.stdout + result.stderr


@pytest.fixture(scope="module")
def migrations(run_container: Callable[[str, str, str], Container]) -> Container:
    job = run_container("app", "migrations-1", "migrations")
    job.process.wait(120)
    return job


async def test_migrations_job_builds_the_schema(
    migrations: Container, postgres_server: DatabaseEndpoint, image_db: str
) -> None:
    assert migrations.process.returncode == 0, migrations.output()
    dsn = postgres_server.dsn.rsplit("/", 1)[0] + f"/{image_db}"
    connection = await asyncpg.connect(dsn)
    try:
        version = await connection.fetchval("SELECT version_num FROM alembic_version")
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    finally:
        await connection.close()
    assert version
    assert {"orders", "outbox", "products"} <= {row["tablename"] for row in tables}


@pytest.fixture(scope="module")
def pgbouncer(
    run_container: Callable[[str, str, str], Container], chart: Chart, migrations: Container
) -> Container:
    sidecar = run_container("pgbouncer", "api", "pgbouncer")
    sidecar.wait_for("listening port", lambda: accepts(chart.ports.pgbouncer))
    return sidecar


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_pgbouncer_image_runs_the_local_stacks_pgbouncer(
    podman: Podman, images: dict[str, Target]
) -> None:
    argv = podman.container_argv(images["pgbouncer"].tag, "pgbouncer", "--version")
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"PgBouncer {PGBOUNCER_VERSION}"


async def test_pgbouncer_image_pools_with_the_chart_config(
    pgbouncer: Container, chart: Chart, image_db: str
) -> None:
    """Four clients on the sidecar's two server connections, each keeping its statements
    prepared (asyncpg's statement cache, as the api's engine in the chart does)."""
    dsn = f"postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{chart.ports.pgbouncer}/{image_db}"
    connections = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        for _ in range(3):
            counts = await asyncio.gather(
                *(c.fetchval("SELECT count(*) FROM alembic_version") for c in connections)
            )
            assert counts == [1, 1, 1, 1]
    finally:
        for connection in connections:
            await connection.close()


def test_exporter_image_serves_pgbouncer_metrics(
    run_container: Callable[[str, str, str], Container], pgbouncer: Container, chart: Chart
) -> None:
    exporter = run_container("pgbouncer-exporter", "api", "pgbouncer-exporter")
    url = f"http://127.0.0.1:{chart.ports.exporter}/metrics"
    exporter.wait_for("/metrics", lambda: http_status(url) == 200)
    metrics = httpx.get(url, timeout=5).text
    assert "pgbouncer_up 1.0" in metrics, metrics
    assert f'pgbouncer_databases_database_pool_size{{backend_database="{IMAGE_DB}"' in metrics
    assert exporter.stop() == 0, exporter.output()


def test_api_image_serves_live_and_ready(
    run_container: Callable[[str, str, str], Container], pgbouncer: Container, chart: Chart
) -> None:
    api = run_container("app", "api", "api")
    base = f"http://127.0.0.1:{chart.ports.api}"
    api.wait_for("/livez", lambda: http_status(f"{base}/livez") == 200, timeout=90)
    # Through the PgBouncer sidecar's image to Postgres, and to the cache Redis.
    ready = httpx.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    products = httpx.get(f"{base}/products", timeout=5)
    assert products.status_code == 200, products.text
    metrics = f"http://127.0.0.1:{chart.ports.api_metrics}/metrics"
    assert http_status(metrics) == 200
    assert api.stop() == 0, api.output()


def test_worker_image_starts_and_serves_its_probe(
    run_container: Callable[[str, str, str], Container], chart: Chart, migrations: Container
) -> None:
    worker = run_container("app", "worker", "worker")
    worker.wait_for("'ready.'", lambda: " ready." in worker.output(), timeout=90)
    # The chart's liveness and readiness probes.
    assert http_status(f"http://127.0.0.1:{chart.ports.worker_metrics}/metrics") == 200
    assert worker.stop() == 0, worker.output()


def test_relay_image_starts_and_serves_metrics(
    run_container: Callable[[str, str, str], Container], chart: Chart, migrations: Container
) -> None:
    relay = run_container("app", "relay", "relay")
    relay.wait_for("'relay started'", lambda: "relay started" in relay.output())
    metrics = f"http://127.0.0.1:{chart.ports.relay_metrics}/metrics"
    relay.wait_for("/metrics", lambda: http_status(metrics) == 200)
    assert relay.stop() == 0, relay.output()
