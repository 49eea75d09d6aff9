"""The worker under test: real broker Redis, real Celery worker and relay processes, a
real SMTP server, and the real api (in-process) placing orders through PgBouncer.

Timings are shrunk (seconds, not minutes) but keep the orderings that Settings checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devstack.servers import free_port
from services.core.settings import Settings
from services.migrations import runner
from tests.support.api import RunningApi, running_api
from tests.support.endpoints import TABLES, DatabaseEndpoint, RedisEndpoint
from tests.support.keys import TEST_KEY_SECRET
from tests.support.limits import UNLIMITED
from tests.support.processes import TIMINGS, BrokerRedis, Processes
from tests.support.smtp import SmtpServer


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
        "auth": {"hmac_key": TEST_KEY_SECRET},
        "rate_limit": UNLIMITED,
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
