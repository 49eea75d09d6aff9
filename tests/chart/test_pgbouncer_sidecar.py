"""The chart's PgBouncer sidecar configuration, run for real.

The ConfigMap's ``pgbouncer.ini`` and ``start.sh`` (rendered by helm) start Debian's
PgBouncer — the package the sidecar image installs — in front of a real Postgres; the app's
kind of client (asyncpg, SCRAM, transaction pooling) works through it, and the exporter
sidecar's software, with the ConfigMap's ``exporter.yml``, serves the series the
dashboards and alerts use. Only the in-container paths are moved into a temp directory.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from devstack.monitoring import PGBOUNCER_EXPORTER_VENV
from devstack.servers import SERVER_LOGIN_RETRY_S, as_user, free_port, own, unprivileged_user
from tests.support.chart import Helm
from tests.support.endpoints import APP_DB, APP_PASSWORD, APP_USER, DatabaseEndpoint


@dataclass(frozen=True)
class Sidecar:
    port: int
    workdir: Path  # the ConfigMap's files


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"port {port} not open:\n{log.read_text()}")


@pytest.fixture(scope="module")
def sidecar(helm: Helm, servers_dir: Path, postgres_server: DatabaseEndpoint) -> Iterator[Sidecar]:
    """PgBouncer started exactly as the sidecar starts it."""
    if shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists():
        pytest.skip("pgbouncer not installed (make deps)")
    port = free_port()
    docs = helm.template(
        set_values={
            "postgresql.enabled": "false",
            "externalDatabase.host": "127.0.0.1",
            "externalDatabase.port": str(postgres_server.port),
            "externalDatabase.database": APP_DB,
            "externalDatabase.username": APP_USER,
            "externalDatabase.password": APP_PASSWORD,
            "externalDatabase.sslMode": "disable",
            "pgbouncer.port": str(port),
            "pgbouncer.defaultPoolSize": "2",
        }
    )
    [config] = [d for d in docs if d["kind"] == "ConfigMap" and "pgbouncer.ini" in d["data"]]
    user = unprivileged_user()
    workdir = servers_dir / "chart-pgbouncer"
    own(workdir, user, mode=0o700)
    for name, text in config["data"].items():
        text = text.replace("/var/run/pgbouncer/", f"{workdir}/").replace(
            "/etc/pgbouncer/", f"{workdir}/"
        )
        # In the pod, `*` is the pod's own addresses; on this host it would be every
        # interface of the machine.
        text = text.replace("listen_addr = *", "listen_addr = 127.0.0.1")
        (workdir / name).write_text(text)
        if user is not None:
            shutil.chown(workdir / name, user)
    log = workdir / "pgbouncer.log"
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PGBOUNCER_USER": APP_USER,
        "PGBOUNCER_PASSWORD": APP_PASSWORD,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["sh", str(workdir / "start.sh")],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            **as_user(user),
        )
    try:
        wait_for_port(port, process, log)
        yield Sidecar(port, workdir)
    finally:
        process.terminate()
        process.wait(10)


async def test_app_connects_through_the_sidecar_config(sidecar: Sidecar) -> None:
    dsn = f"postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{sidecar.port}/{APP_DB}"
    # As the app connects: no statement cache (transaction pooling).
    connections = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(6)]
    try:
        for connection in connections:
            assert await connection.fetchval("SELECT 1") == 1
    finally:
        for connection in connections:
            await connection.close()


async def test_wrong_password_is_refused(sidecar: Sidecar) -> None:
    # PgBouncer 1.18 answers a failed SCRAM exchange as a protocol error.
    with pytest.raises(asyncpg.PostgresError, match="authentication failed"):
        await asyncpg.connect(f"postgresql://{APP_USER}:nope@127.0.0.1:{sidecar.port}/{APP_DB}")


def test_exporter_reads_the_sidecar(sidecar: Sidecar, tmp_path: Path) -> None:
    exporter = PGBOUNCER_EXPORTER_VENV / "bin" / "pgbouncer-exporter"
    if not exporter.exists():
        pytest.skip("the PgBouncer exporter is not installed (make deps)")
    port = free_port()
    config = (sidecar.workdir / "exporter.yml").read_text()
    config = config.replace("exporter_host: 0.0.0.0", "exporter_host: 127.0.0.1")
    config = re.sub(r"exporter_port: \d+", f"exporter_port: {port}", config)
    (tmp_path / "exporter.yml").write_text(config)
    log = tmp_path / "exporter.log"
    # As the chart's exporter container is configured: the password from the Secret.
    env = {**os.environ, "PGBOUNCER_PASSWORD": APP_PASSWORD}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(exporter), "--config", str(tmp_path / "exporter.yml")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, log)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        process.terminate()
        process.wait(10)
    assert "pgbouncer_up 1.0" in metrics, metrics
    pool_size = f'{{backend_database="{APP_DB}",database="{APP_DB}"}} 2.0'
    assert f"pgbouncer_databases_database_pool_size{pool_size}" in metrics
    assert "pgbouncer_pools_client_maxwait_seconds" in metrics


def test_refuses_to_start_when_the_fd_limit_cannot_hold_its_clients(sidecar: Sidecar) -> None:
    """A hard RLIMIT_NOFILE below max_client_conn would have PgBouncer refuse clients with
    EMFILE under load; the start script fails at once and says why."""
    result = subprocess.run(
        ["prlimit", "--nofile=256:256", "sh", str(sidecar.workdir / "start.sh")],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PGBOUNCER_USER": APP_USER},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 1
    assert "RLIMIT_NOFILE 256 <" in result.stderr


def test_reconnects_to_postgres_as_fast_as_the_local_stack(sidecar: Sidecar) -> None:
    """The sidecar and the local stack's PgBouncer retry a failed Postgres login equally
    soon, so an outage proven short locally is short in the cluster."""
    parser = configparser.ConfigParser()
    parser.read_string((sidecar.workdir / "pgbouncer.ini").read_text())
    assert int(parser["pgbouncer"]["server_login_retry"]) == SERVER_LOGIN_RETRY_S
