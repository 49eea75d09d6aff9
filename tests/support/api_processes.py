"""Real api processes (uvicorn, one worker each) for the cross-process cache tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.servers import LOCALHOST, free_port, tail
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint
from tests.support.keys import TEST_KEY_SECRET
from tests.support.limits import UNLIMITED_ENV
from tests.support.pgbouncer_admin import database_stats

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def api_env(
    postgres: DatabaseEndpoint, pgbouncer: DatabaseEndpoint, redis: RedisEndpoint
) -> dict[str, str]:
    return {
        "STAMPEDE_PROFILE": "prod",
        "STAMPEDE_DB__URL": pgbouncer.url,
        "STAMPEDE_DB__MIGRATION_URL": postgres.url,
        "STAMPEDE_DB__POOLER_TRACKS_PREPARED_STATEMENTS": str(
            pgbouncer.tracks_prepared_statements
        ).lower(),
        "STAMPEDE_REDIS__CACHE_URL": redis.url,
        "STAMPEDE_AUTH__HMAC_KEY": TEST_KEY_SECRET,
        **UNLIMITED_ENV,
        "STAMPEDE_LOG__LEVEL": "WARNING",
        "STAMPEDE_LOG__ACCESS_LOG": "false",
    }


@contextmanager
def api_process(env: Mapping[str, str], log: Path, hash_seed: str) -> Iterator[ApiProcess]:
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", "services.api.main:create_app"),
        *("--host", LOCALHOST, "--port", str(port), "--no-access-log", "--log-level", "warning"),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **env, "PYTHONHASHSEED": hash_seed},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = ApiProcess(f"http://{LOCALHOST}:{port}", process, log)
    try:
        _wait_live(api)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def api_processes(
    env: Mapping[str, str], workdir: Path, count: int = 2
) -> Iterator[list[ApiProcess]]:
    """``count`` api processes, each under a different PYTHONHASHSEED."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(api_process(env, workdir / f"api{i}.log", hash_seed=str(i + 1)))
            for i in range(count)
        ]


def _wait_live(api: ApiProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if api.process.poll() is not None:
            raise RuntimeError(f"api exited:\n{tail(api.log)}")
        try:
            if httpx.get(api.url + "/livez", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"api not live after {timeout}s:\n{tail(api.log)}")
        time.sleep(0.1)


def pgbouncer_totals(pgbouncer: DatabaseEndpoint) -> tuple[int, int]:
    """(transactions, queries) PgBouncer has pooled for the app database so far.

    A query is a round trip that ended with the server ready again (an extended-protocol
    Sync counts too), so a prepare and its execute are two."""
    stats = database_stats(pgbouncer)
    return stats.get("total_xact_count", 0), stats.get("total_query_count", 0)
