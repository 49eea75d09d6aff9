"""Run the api the way production does (gunicorn + uvicorn workers) for a test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.servers import free_port
from tests.support.keys import TEST_KEY_SECRET
from tests.support.limits import UNLIMITED_ENV

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    base_url: str
    metrics_url: str
    metrics_port: int
    log_path: Path

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


@contextmanager
def run_gunicorn(
    workdir: Path, *, database_url: str, cache_url: str, workers: int = 2, **settings: str
) -> Iterator[Gunicorn]:
    """Start gunicorn on free ports, wait for /readyz, kill it on exit if still alive.

    ``settings`` are extra ``STAMPEDE_*`` variables, e.g. ``SERVER__GRACEFUL_TIMEOUT_S``.
    """
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "STAMPEDE_PROFILE": "prod",
        "STAMPEDE_DB__URL": database_url,
        "STAMPEDE_REDIS__CACHE_URL": cache_url,
        "STAMPEDE_AUTH__HMAC_KEY": TEST_KEY_SECRET,
        **UNLIMITED_ENV,
        "STAMPEDE_SERVER__BIND": f"127.0.0.1:{port}",
        "STAMPEDE_SERVER__WORKERS": str(workers),
        "STAMPEDE_METRICS__BIND": f"127.0.0.1:{metrics_port}",
        "STAMPEDE_METRICS__MULTIPROC_DIR": str(workdir / "metrics"),
        **{f"STAMPEDE_{name}": value for name, value in settings.items()},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [GUNICORN, "-c", "python:services.api.gunicorn_conf", "services.api.main:create_app()"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: see the cleanup below
        )
    server = Gunicorn(
        process,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{metrics_port}/metrics",
        metrics_port,
        log_path,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        # uvicorn workers do not watch their master: killing only the master (as this
        # did with SIGKILL) left both workers serving, orphaned, after the test run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
