from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis

from devstack.pgbouncer_builds import BUILD_SCRIPT, CURRENT_PGBOUNCER, PGBOUNCER_VERSION
from devstack.servers import (
    LOCALHOST,
    MAX_PREPARED_STATEMENTS,
    PostgresServer,
    RedisServer,
    ServerError,
    free_port,
    start,
)
from tests.support import pgbouncer_admin
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint


async def test_query_through_pgbouncer(pgbouncer_server: DatabaseEndpoint) -> None:
    conn = await asyncpg.connect(pgbouncer_server.dsn, statement_cache_size=0)
    try:
        assert await conn.fetchval("SELECT current_user || '@' || current_database()") == (
            "stampede@stampede"
        )
    finally:
        await conn.close()


def test_pgbouncer_pools_transactions(pgbouncer_server: DatabaseEndpoint) -> None:
    config = pgbouncer_admin.config(pgbouncer_server)
    assert config["pool_mode"] == "transaction"
    assert config["default_pool_size"] == "4"
    assert config["max_client_conn"] == "1000"


def test_the_current_pgbouncer_is_the_pinned_release() -> None:
    """The binary build-pgbouncer.sh built (make deps) is the release both pins name."""
    assert PGBOUNCER_VERSION == "1.24.1"
    assert f"\nPGBOUNCER_VERSION={PGBOUNCER_VERSION}\n" in BUILD_SCRIPT.read_text()
    result = subprocess.run(
        [CURRENT_PGBOUNCER.binary, "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[0] == "PgBouncer 1.24.1"


def test_the_tests_pgbouncer_tracks_prepared_statements(
    pgbouncer_server: DatabaseEndpoint,
) -> None:
    [version] = pgbouncer_admin.show(pgbouncer_server, "VERSION")
    assert version["version"] == f"PgBouncer {PGBOUNCER_VERSION}"
    config = pgbouncer_admin.config(pgbouncer_server)
    assert config["max_prepared_statements"] == str(MAX_PREPARED_STATEMENTS)
    assert pgbouncer_server.tracks_prepared_statements


def test_the_old_pooler_is_debian_12s_pgbouncer(old_pgbouncer_server: DatabaseEndpoint) -> None:
    """The safe mode's pooler: 1.18 knows no max_prepared_statements."""
    [version] = pgbouncer_admin.show(old_pgbouncer_server, "VERSION")
    assert version["version"].startswith("PgBouncer 1.18.")
    config = pgbouncer_admin.config(old_pgbouncer_server)
    assert config["pool_mode"] == "transaction"
    assert "max_prepared_statements" not in config
    assert not old_pgbouncer_server.tracks_prepared_statements


async def test_many_clients_share_few_server_connections(
    pgbouncer_server: DatabaseEndpoint, postgres_server: DatabaseEndpoint
) -> None:
    """Session pooling would need one server connection per connected client."""
    clients = [
        await asyncpg.connect(pgbouncer_server.dsn, statement_cache_size=0) for _ in range(10)
    ]
    direct = await asyncpg.connect(postgres_server.dsn)
    try:
        queries = asyncio.gather(*(c.fetchval("SELECT 1") for c in clients))
        # Under session pooling the fifth client would wait for a free server connection.
        assert await asyncio.wait_for(queries, timeout=10) == [1] * 10
        # Postgres' backends for this PgBouncer's server connections (the session's other
        # PgBouncer, the old pooler, holds its own): matched by the pooler's local port.
        ports = [
            int(row["local_port"]) for row in pgbouncer_admin.show(pgbouncer_server, "SERVERS")
        ]
        servers = await direct.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE usename = 'stampede' AND client_port = ANY($1::integer[])",
            ports,
        )
        assert 1 <= servers == len(ports) <= 4
    finally:
        await asyncio.gather(direct.close(), *(c.close() for c in clients))


async def test_postgres_requires_the_password(postgres_server: DatabaseEndpoint) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(postgres_server.dsn.replace(":stampede@", ":wrong@"))


async def test_cache_redis_evicts_and_keeps_nothing(cache_redis_server: RedisEndpoint) -> None:
    client = redis.Redis.from_url(cache_redis_server.url)
    try:
        config = await client.config_get("*")
    finally:
        await client.aclose()
    assert config["maxmemory-policy"] == "allkeys-lru"
    assert config["maxmemory"] == str(256 * 1024 * 1024)
    assert config["save"] == ""
    assert config["appendonly"] == "no"


async def test_broker_redis_never_evicts_and_keeps_an_aof(tmp_path: Path) -> None:
    server = RedisServer(workdir=tmp_path, port=free_port(), role="broker")
    with start(server) as process:
        process.wait_ready()
        client = redis.Redis.from_url(RedisEndpoint(LOCALHOST, server.port, process).url)
        try:
            config = await client.config_get("*")
        finally:
            await client.aclose()
    assert config["maxmemory-policy"] == "noeviction"
    assert config["appendonly"] == "yes"
    assert config["save"] == ""
    assert config["dir"] == str(tmp_path)
    assert (tmp_path / "appendonlydir").is_dir()


def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    # Bound but not listening: Redis cannot bind the port, and nothing answers on it.
    with socket.socket() as taken:
        taken.bind((LOCALHOST, 0))
        port = taken.getsockname()[1]
        with (
            start(RedisServer(workdir=tmp_path, port=port, role="cache")) as process,
            pytest.raises(ServerError, match=r"(?s)exited with code.*Address already in use"),
        ):
            process.wait_ready(timeout=10)


def test_kill_stops_serving(tmp_path: Path) -> None:
    server = RedisServer(workdir=tmp_path, port=free_port(), role="cache")
    with start(server) as process:
        process.wait_ready()
        process.kill()
        assert process.process.returncode == -9
        assert not server.is_ready()


@pytest.mark.slow
def test_postgres_setup_is_idempotent(servers_dir: Path) -> None:
    server = PostgresServer(
        datadir=servers_dir / "pg-idempotent" / "data",
        port=free_port(),
        socket_dir=servers_dir / "pg-idempotent" / "socket",
    )
    server.initdb()
    with start(server) as process:
        process.wait_ready(timeout=60)
        server.bootstrap("app", "first", "appdb")
        server.bootstrap("app", "it's new", "appdb")
        server.initdb()  # a no-op on an existing cluster
        endpoint = DatabaseEndpoint(
            LOCALHOST, server.port, process, user="app", password="it's new", database="appdb"
        )
        result = subprocess.run(
            [
                *(str(server.bin_dir / "psql"), "-X", "-A", "-t", endpoint.dsn.replace("'", "%27")),
                *("-c", "SELECT datdba::regrole FROM pg_database WHERE datname = 'appdb'"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == "app"
    assert not server.is_ready()
