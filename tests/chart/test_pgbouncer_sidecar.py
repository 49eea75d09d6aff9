"""The chart's PgBouncer sidecar configuration, run for real.

The ConfigMap's ``pgbouncer.ini`` and ``start.sh`` (rendered by helm) start PgBouncer
1.24.1 — built by the script the sidecar image builds it with — in front of a real
Postgres; the app's kind of client (asyncpg, SCRAM, transaction pooling, cached prepared
statements, as the api's settings in the chart say) works through it, and the exporter
sidecar's software, with the ConfigMap's ``exporter.yml``, serves the series the
dashboards and alerts use. Only the in-container paths are moved into a temp directory.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy

from devstack.monitoring import PGBOUNCER_EXPORTER_VENV
from devstack.pgbouncer_builds import CURRENT_PGBOUNCER
from devstack.servers import SERVER_LOGIN_RETRY_S, as_user, free_port, own, unprivileged_user
from services.core.db import create_engine
from services.core.settings import DatabaseSettings
from tests.support.chart import Doc, Helm, containers, pgbouncer_settings
from tests.support.endpoints import APP_DB, APP_PASSWORD, APP_USER, DatabaseEndpoint
from tests.support.pgbouncer_admin import ConsoleError, console

# The image's PATH, with the build's binary where the image has it (/usr/local/bin), ahead
# of Debian's own 1.18 in /usr/sbin.
SIDECAR_PATH = f"{CURRENT_PGBOUNCER.binary.parent}:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Sidecar:
    port: int
    workdir: Path  # the ConfigMap's files
    api_env: dict[str, str]  # the api container's environment, as rendered
    pool_dir: Path  # the operator's pool file (with the operator on)


def api_container_env(docs: list[Doc]) -> dict[str, str]:
    """The api container's literal environment variables, as rendered."""
    [api] = [
        container
        for doc in docs
        if doc["kind"] == "Deployment"
        for _, container in containers(doc)
        if container["name"] == "api"
    ]
    return {e["name"]: e["value"] for e in api["env"] if "value" in e}


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


@contextmanager
def run_sidecar(
    helm: Helm,
    workdir: Path,
    postgres_server: DatabaseEndpoint,
    set_values: dict[str, str],
    env: dict[str, str],
) -> Iterator[Sidecar]:
    """PgBouncer started exactly as the sidecar starts it: the rendered ConfigMaps' files
    (the pool file, with the operator, where the pod mounts it), the Secret-sourced
    environment given in ``env``."""
    if not CURRENT_PGBOUNCER.binary.exists():
        pytest.skip(
            f"PgBouncer {CURRENT_PGBOUNCER.version} not built ({CURRENT_PGBOUNCER.install_hint})"
        )
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
            **set_values,
        }
    )
    [config] = [d for d in docs if d["kind"] == "ConfigMap" and "pgbouncer.ini" in d["data"]]
    pools = [d for d in docs if d["kind"] == "ConfigMap" and "pool.ini" in d["data"]]
    api_env = api_container_env(docs)
    user = unprivileged_user()
    own(workdir, user, mode=0o700)
    pool_dir = workdir / "pgbouncer-pool"
    files = {workdir / name: text for name, text in config["data"].items()}
    for pool in pools:
        pool_dir.mkdir(exist_ok=True)
        files[pool_dir / "pool.ini"] = pool["data"]["pool.ini"]
    for path, text in files.items():
        text = (
            text.replace("/var/run/pgbouncer/", f"{workdir}/")
            .replace("/etc/pgbouncer/", f"{workdir}/")
            .replace("/etc/pgbouncer-pool/", f"{pool_dir}/")
        )
        # In the pod, `*` is the pod's own addresses; on this host it would be every
        # interface of the machine.
        text = text.replace("listen_addr = *", "listen_addr = 127.0.0.1")
        path.write_text(text)
        if user is not None:
            shutil.chown(path, user)
            shutil.chown(path.parent, user)
    log = workdir / "pgbouncer.log"
    env = {
        "PATH": SIDECAR_PATH,
        "PGBOUNCER_USER": APP_USER,
        "PGBOUNCER_PASSWORD": APP_PASSWORD,
        **env,
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
        yield Sidecar(port, workdir, api_env, pool_dir)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def sidecar(helm: Helm, servers_dir: Path, postgres_server: DatabaseEndpoint) -> Iterator[Sidecar]:
    """The sidecar without the operator: exactly as before it existed, a static pool."""
    with run_sidecar(
        helm,
        servers_dir / "chart-pgbouncer",
        postgres_server,
        {"operator.enabled": "false", "pgbouncer.defaultPoolSize": "2"},
        {},
    ) as started:
        yield started


async def test_app_connects_through_the_sidecar_config(sidecar: Sidecar) -> None:
    """The api's settings in the chart say the sidecar tracks prepared statements, so its
    engine caches them: six such clients on the sidecar's two server connections reuse
    their statements across transactions without an error."""
    tracked = sidecar.api_env["STAMPEDE_DB__POOLER_TRACKS_PREPARED_STATEMENTS"]
    assert tracked == "true"
    settings = DatabaseSettings.model_validate(
        {"pooler_tracks_prepared_statements": tracked, "pool_size": 6}
    )
    url = f"postgresql+asyncpg://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{sidecar.port}/{APP_DB}"
    engine = create_engine(url, settings)
    statement = sqlalchemy.text("SELECT CAST(:i AS integer)")

    async def transactions(client: int) -> None:
        async with engine.connect() as connection:
            for i in range(20):
                value = await connection.scalar(statement, {"i": i})
                assert value == i
                await connection.commit()

    try:
        await asyncio.gather(*(transactions(client) for client in range(6)))
    finally:
        await engine.dispose()


async def test_wrong_password_is_refused(sidecar: Sidecar) -> None:
    # PgBouncer (1.18 and 1.24 alike) answers a failed SCRAM exchange as a protocol error.
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
        env={"PATH": SIDECAR_PATH, "PGBOUNCER_USER": APP_USER},
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


@pytest.mark.parametrize(("tracked", "api_caches"), [("200", "true"), ("0", "false")])
def test_the_api_caches_statements_only_when_the_sidecar_tracks_them(
    helm: Helm, tracked: str, api_caches: str
) -> None:
    docs = helm.template(set_values={"pgbouncer.maxPreparedStatements": tracked})
    [config] = [d for d in docs if d["kind"] == "ConfigMap" and "pgbouncer.ini" in d["data"]]
    assert pgbouncer_settings(config["data"]["pgbouncer.ini"])["max_prepared_statements"] == tracked
    assert api_container_env(docs)["STAMPEDE_DB__POOLER_TRACKS_PREPARED_STATEMENTS"] == api_caches


# ---- with the ConnectionBudget operator ------------------------------------------------

ADMIN_USER, ADMIN_PASSWORD = "stampede_operator", "admin-" + "pw"
OPERATOR_VALUES = {
    "operator.pgbouncerAdmin.password": ADMIN_PASSWORD,
    # The pool file the chart pre-creates: 3 (100 - 23 fixed - 10 reserve over 13 pods
    # would be 5; the maximum caps it).
    "externalDatabase.maxConnections": "100",
    "operator.api.maxPoolSize": "3",
}


@pytest.fixture(scope="module")
def pooled_sidecar(
    helm: Helm, servers_dir: Path, postgres_server: DatabaseEndpoint
) -> Iterator[Sidecar]:
    """The sidecar with the operator on: its pool from the operator's file, an admin user
    from the admin Secret's environment."""
    with run_sidecar(
        helm,
        servers_dir / "chart-pgbouncer-pooled",
        postgres_server,
        OPERATOR_VALUES,
        {"PGBOUNCER_ADMIN_USER": ADMIN_USER, "PGBOUNCER_ADMIN_PASSWORD": ADMIN_PASSWORD},
    ) as started:
        yield started


def admin_dsn(sidecar: Sidecar, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
    return f"postgresql://{user}:{password}@127.0.0.1:{sidecar.port}/pgbouncer"


def pool_config(sidecar: Sidecar) -> tuple[int, int]:
    config = {row["key"]: row["value"] for row in console(admin_dsn(sidecar), "SHOW CONFIG")}
    return int(config["default_pool_size"]), int(config["max_db_connections"])


def write_pool_file(sidecar: Sidecar, size: int) -> None:
    """As the operator writes the ConfigMap (and the kubelet the mounted file)."""
    path = sidecar.pool_dir / "pool.ini"
    path.write_text(f"default_pool_size = {size}\nmax_db_connections = {size}\n")


def set_pool(sidecar: Sidecar, size: int) -> None:
    """As the operator pushes a size to a running pod."""
    for setting in ("default_pool_size", "max_db_connections"):
        console(admin_dsn(sidecar), f"SET {setting} = {size}")


def test_pool_size_comes_from_the_operators_file(pooled_sidecar: Sidecar) -> None:
    assert (pooled_sidecar.pool_dir / "pool.ini").read_text() == (
        "default_pool_size = 3\nmax_db_connections = 3\n"
    )
    assert pool_config(pooled_sidecar) == (3, 3)


async def test_the_app_still_connects_through_the_pooled_sidecar(pooled_sidecar: Sidecar) -> None:
    url = f"postgresql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{pooled_sidecar.port}/{APP_DB}"
    connection = await asyncpg.connect(url)
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()


def test_the_operator_resizes_a_running_pool_and_a_reload_keeps_it(
    pooled_sidecar: Sidecar,
) -> None:
    """The operator's order: growing, the file first, then the pod; shrinking, the pod
    first, then the file. Either way the file and the running value agree, so a RELOAD
    (or a restarted container) keeps the size; a SET alone would not survive one."""
    try:
        write_pool_file(pooled_sidecar, 7)
        set_pool(pooled_sidecar, 7)
        assert pool_config(pooled_sidecar) == (7, 7)
        console(admin_dsn(pooled_sidecar), "RELOAD")
        assert pool_config(pooled_sidecar) == (7, 7)

        set_pool(pooled_sidecar, 4)
        write_pool_file(pooled_sidecar, 4)
        console(admin_dsn(pooled_sidecar), "RELOAD")
        assert pool_config(pooled_sidecar) == (4, 4)

        set_pool(pooled_sidecar, 9)  # never written to the file
        assert pool_config(pooled_sidecar) == (9, 9)
        console(admin_dsn(pooled_sidecar), "RELOAD")
        assert pool_config(pooled_sidecar) == (4, 4)
    finally:
        write_pool_file(pooled_sidecar, 3)
        set_pool(pooled_sidecar, 3)


def test_only_the_admin_user_may_change_the_pool(pooled_sidecar: Sidecar) -> None:
    """The app's user is a stats user (its exporter reads SHOW): it may look, not SET."""
    app = admin_dsn(pooled_sidecar, APP_USER, APP_PASSWORD)
    assert console(app, "SHOW POOLS")
    with pytest.raises(ConsoleError, match="admin access needed"):
        console(app, "SET default_pool_size = 50")
    with pytest.raises(ConsoleError, match=r"password authentication failed|SASL"):
        console(admin_dsn(pooled_sidecar, password="wrong"), "SHOW CONFIG")
    assert pool_config(pooled_sidecar) == (3, 3)
