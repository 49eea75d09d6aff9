"""The worker under test: real broker Redis, real Celery worker and relay processes, a
real SMTP server, and the real api (in-process) placing orders through PgBouncer.

Timings are shrunk (seconds, not minutes) but keep the orderings that Settings checks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from devstack.servers import LOCALHOST, RedisServer, RunningProcess, free_port, start
from devstack.stack import RELAY_COMMAND, WORKER_COMMAND
from services.core.settings import Settings
from services.migrations import runner
from tests.api.conftest import RunningApi, running_api
from tests.conftest import TABLES, DatabaseEndpoint, RedisEndpoint
from tests.worker.processes import Process
from tests.worker.smtp import SmtpServer

TIMINGS: dict[str, dict[str, Any]] = {
    "broker": {"visibility_timeout_s": 10, "restore_interval_s": 1, "connect_timeout_s": 1},
    "worker": {
        "concurrency": 2,
        "soft_time_limit_s": 4,
        "time_limit_s": 6,
        "claim_lease_s": 8,
        "max_retries": 3,
        "retry_backoff_s": 1,
        "retry_backoff_max_s": 2,
    },
    "relay": {"poll_interval_s": 0.5, "republish_after_s": 30},
}


class BrokerRedis:
    """The broker Redis (noeviction, AOF), which a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.server = RedisServer(workdir=workdir, port=free_port(), role="broker")
        self.url = f"redis://{LOCALHOST}:{self.server.port}/0"
        self.process: RunningProcess | None = None

    def start(self) -> None:
        self.process = start(self.server)
        self.process.wait_ready()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture(scope="session")
def broker(servers_dir: Path) -> Iterator[BrokerRedis]:
    server = BrokerRedis(servers_dir / "redis-broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_config(
    postgres_server: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
    broker: BrokerRedis,
    smtp_server: SmtpServer,
) -> dict[str, dict[str, Any]]:
    """Every process's settings, as nested values (for Settings) and env (processes)."""
    runner.upgrade(postgres_server.url)
    return {
        "db": {
            "url": pgbouncer_server.url,
            "migration_url": postgres_server.url,
            "pool_timeout_s": 30,
        },
        "redis": {"cache_url": cache_redis_server.url},
        "broker": {"url": broker.url, **TIMINGS["broker"]},
        "worker": TIMINGS["worker"],
        "relay": {"listen_url": postgres_server.url, **TIMINGS["relay"]},
        "smtp": {
            "host": smtp_server.host,
            "port": smtp_server.port,
            "security": "none",
            "timeout_s": 3,
        },
        "log": {"level": "INFO", "json_format": True, "access_log": False},
    }


@pytest.fixture(scope="session")
def worker_settings(worker_config: dict[str, dict[str, Any]]) -> Settings:
    return Settings(profile="prod", **worker_config)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def worker_env(worker_config: dict[str, dict[str, Any]]) -> dict[str, str]:
    env = {"STAMPEDE_PROFILE": "prod"}
    for group, values in worker_config.items():
        for key, value in values.items():
            env[f"STAMPEDE_{group.upper()}__{key.upper()}"] = str(value)
    return env


@pytest.fixture(scope="session")
async def shop(worker_settings: Settings) -> AsyncIterator[RunningApi]:
    """The api, to place orders and read them back."""
    quiet = worker_settings.model_copy(
        update={"log": worker_settings.log.model_copy(update={"level": "WARNING"})}
    )
    async with running_api(quiet) as running:
        yield running


class Processes:
    """Starts workers and relays for one test and stops whatever is left at its end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self._running: list[Process] = []

    def worker(self) -> Process:
        node = f"test-{uuid.uuid4().hex[:8]}@%h"
        process = self._start("worker", [*WORKER_COMMAND, "-n", node])
        process.wait_for_output(" ready.", timeout=60)
        return process

    def relay(self) -> Process:
        process = self._start("relay", RELAY_COMMAND)
        process.wait_for_output("relay started", timeout=60)
        return process

    def _start(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self._env, self._log_dir / f"{name}.log")
        self._running.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self._running):
            process.stop()


@pytest.fixture
def processes(
    clean: None,
    worker_env: dict[str, str],
    tmp_path: Path,
    broker: BrokerRedis,
    smtp_server: SmtpServer,
) -> Iterator[Processes]:
    running = Processes(worker_env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()
        if broker.process is None:  # a test stopped it and failed before restarting
            broker.start()
        broker.client().flushall()
        smtp_server.handler.reset()


@pytest.fixture
async def clean(db: asyncpg.Connection, broker: BrokerRedis, smtp_server: SmtpServer) -> None:
    await db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    broker.client().flushall()
    smtp_server.handler.reset()
