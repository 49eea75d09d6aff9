from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis

from devstack.servers import (
    LOCALHOST,
    PostgresServer,
    RedisServer,
    ServerError,
    free_port,
    postgres_bin_dir,
    start,
)
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
    # The admin console speaks only the simple query protocol, which psql uses.
    admin = pgbouncer_server.dsn.rsplit("/", 1)[0] + "/pgbouncer"
    result = subprocess.run(
        [str(postgres_bin_dir() / "psql"), "-X", "-A", "-t", admin, "-c", "SHOW CONFIG"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = dict(line.split("|")[:2] for line in result.stdout.splitlines() if "|" in line)
    assert config["pool_mode"] == "transaction"
    assert config["default_pool_size"] == "4"
    assert config["max_client_conn"] == "1000"


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
        servers = await direct.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE usename = 'stampede' AND pid <> pg_backend_pid()"
        )
        assert 1 <= servers <= 4
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
