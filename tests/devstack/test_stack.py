from __future__ import annotations

import configparser
import time
from pathlib import Path

from devstack import stack
from devstack.pgbouncer_builds import CURRENT_PGBOUNCER
from devstack.servers import PgBouncerServer, RedisServer, free_port, port_is_free
from devstack.supervision import Program, Supervisor
from services.core.settings import (
    DEV_BROKER_URL,
    DEV_CACHE_REDIS_URL,
    DEV_DATABASE_URL,
    DEV_MIGRATION_URL,
    DEV_SMTP_PORT,
    Settings,
)


def test_the_dev_profile_points_at_the_stack() -> None:
    assert stack.postgres_dsn(stack.PGBOUNCER_PORT) == DEV_DATABASE_URL.replace("+asyncpg", "")
    assert stack.postgres_dsn(stack.POSTGRES_PORT) == DEV_MIGRATION_URL.replace("+asyncpg", "")
    assert stack.CACHE_REDIS_URL == DEV_CACHE_REDIS_URL
    assert stack.BROKER_URL == DEV_BROKER_URL
    assert stack.SMTP_PORT == DEV_SMTP_PORT
    dev = Settings(profile="dev")
    assert dev.broker_url == DEV_BROKER_URL != dev.cache_redis_url
    assert (dev.smtp_host, dev.smtp.port, dev.smtp.security) == ("127.0.0.1", DEV_SMTP_PORT, "none")


def test_the_stack_runs_the_current_pgbouncer_as_the_dev_settings_assume() -> None:
    [pgbouncer] = [server for server in stack.servers() if isinstance(server, PgBouncerServer)]
    assert pgbouncer.build == CURRENT_PGBOUNCER
    assert pgbouncer.command()[0] == str(CURRENT_PGBOUNCER.binary)
    assert pgbouncer.tracks_prepared_statements
    assert Settings(profile="dev").db.pooler_tracks_prepared_statements


def test_supervisord_config(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    supervisor.write_config(stack.programs(), directory=stack.REPO)
    config = configparser.ConfigParser(interpolation=None)
    config.read(supervisor.config_path)

    assert config["program:postgres"]["stopsignal"] == "INT"
    # PgBouncer >= 1.23's immediate shutdown (its SIGTERM waits for every client to leave).
    assert config["program:pgbouncer"]["stopsignal"] == "QUIT"
    assert config["program:api"]["autostart"] == "false"
    assert 'STAMPEDE_PROFILE="dev"' in config["program:api"]["environment"]
    assert (
        "--maxmemory-policy noeviction --appendonly yes"
        in config["program:redis-broker"]["command"]
    )
    for name in ("worker", "relay"):
        assert config[f"program:{name}"]["autostart"] == "false"
        assert 'STAMPEDE_PROFILE="dev"' in config[f"program:{name}"]["environment"]
    assert "services.worker.app --quiet worker" in config["program:worker"]["command"]
    for name in ("postgres", "pgbouncer", "redis-cache", "redis-broker", "mail-sink", "api"):
        section = config[f"program:{name}"]
        assert section["stopasgroup"] == section["killasgroup"] == "true"
        assert section["stdout_logfile"] == str(tmp_path / "logs" / f"{name}.log")


def test_supervisor_starts_and_stops_its_programs(tmp_path: Path) -> None:
    redis = RedisServer(workdir=tmp_path / "redis", port=free_port(), role="cache")
    redis.prepare()
    supervisor = Supervisor(tmp_path)
    supervisor.write_config([Program.for_server(redis, priority=10)], directory=tmp_path)
    supervisor.start_daemon()
    try:
        supervisor.ensure_started(redis.name)
        supervisor.ensure_started(redis.name)  # harmless when already running
        deadline = time.monotonic() + 10
        while supervisor.process_state(redis.name) != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert supervisor.process_state(redis.name) == "RUNNING"
        assert redis.is_ready()
    finally:
        supervisor.shutdown()
    assert not supervisor.is_running()
    assert port_is_free(redis.port)


def test_the_dev_api_key_is_created_once_and_kept_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "dev-api-key"
    made: list[str] = []

    def create() -> str:
        made.append(f"stk_{len(made):012x}_" + "k" * 43)
        return made[-1]

    token, created = stack.ensure_dev_api_key(path, lambda token: token in made, create)
    assert created
    assert path.read_text() == token + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    again, created_again = stack.ensure_dev_api_key(path, lambda token: token in made, create)
    assert (again, created_again) == (token, False)
    assert len(made) == 1
    # A stack whose database no longer knows the key (revoked, or data wiped) gets a new one.
    fresh, renewed = stack.ensure_dev_api_key(path, lambda token: False, create)
    assert renewed
    assert fresh != token
    assert path.read_text() == fresh + "\n"
