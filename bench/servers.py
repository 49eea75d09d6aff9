"""The servers a bench run starts: each under the api's gunicorn config, on free ports,
logging to its own file, stopped (with every worker) when its scenario ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from bench.wrk import pinned
from devstack.servers import LOCALHOST, free_port
from devstack.stack import API_ENV, STACK_DIR
from devstack.supervision import VENV_BIN

GUNICORN = [str(VENV_BIN / "gunicorn"), "-c", "python:services.api.gunicorn_conf"]
API_APP = ["services.api.main:create_app()"]
RAW_FLOOR_APP = ["bench.floors.raw_asyncpg:app"]
# Set per connection or per response by the server itself, so not replayed.
_SERVER_HEADERS = frozenset({"date", "server", "connection", "transfer-encoding"})


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return int(response.status) == 200
    except OSError:
        return False


@contextmanager
def gunicorn(
    app: list[str],
    name: str,
    extra_env: dict[str, str],
    cpus: str | None = None,
    ready_path: str = "/readyz",
) -> Iterator[str]:
    """A gunicorn with the api's config, on free ports; stopped on exit.

    Every scenario is started this way, logging to a file, so none pays for another's
    log handling (the stack's own api logs through supervisord).
    """
    port = free_port()
    env = {
        **os.environ,
        **API_ENV,
        "STAMPEDE_SERVER__BIND": f"{LOCALHOST}:{port}",
        # Its own metrics port and multiprocess directory: never the stack api's.
        "STAMPEDE_METRICS__BIND": f"{LOCALHOST}:{free_port()}",
        "STAMPEDE_METRICS__MULTIPROC_DIR": str(STACK_DIR / f"bench-{name}-metrics"),
        **extra_env,
    }
    log = STACK_DIR / "logs" / f"bench-{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            pinned([*GUNICORN, *app], cpus),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{LOCALHOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while not ready(url + ready_path):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {log}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        finally:
            # uvicorn workers outlive a master that did not stop them: never leave any.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def capture(url: str) -> dict[str, object]:
    """The response as wrk receives it (no Accept-Encoding), for the same-bytes ceiling."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return {
            "status": response.status,
            "headers": [
                (name.lower(), value)
                for name, value in response.getheaders()
                if name.lower() not in _SERVER_HEADERS
            ],
            "body": response.read().decode("latin-1"),
        }
