"""Session-wide real servers on free ports, each in its own temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.pgbouncer_builds import DEBIAN_12_PGBOUNCER
from devstack.servers import (
    LOCALHOST,
    PostgresServer,
    RedisServer,
    free_port,
    make_traversable,
    start,
    unprivileged_user,
)
from services.migrations import runner
from tests.support.endpoints import (
    APP_DB,
    APP_PASSWORD,
    APP_USER,
    TABLES,
    DatabaseEndpoint,
    RedisEndpoint,
    pgbouncer_in_front_of,
)
from tests.support.keys import make_key


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the servers keep their files; reachable by the user they run as."""
    path = tmp_path_factory.mktemp("servers")
    path.chmod(0o755)
    make_traversable(path, unprivileged_user())
    return path


@pytest.fixture(scope="session")
def postgres_server(servers_dir: Path) -> Iterator[DatabaseEndpoint]:
    """Postgres itself (no pooler), with role and database ``stampede`` bootstrapped."""
    server = PostgresServer(
        datadir=servers_dir / "postgres" / "data",
        port=free_port(),
        socket_dir=servers_dir / "postgres" / "socket",
    )
    with start(server) as process:
        process.wait_ready(timeout=60)
        server.bootstrap(APP_USER, APP_PASSWORD, APP_DB)
        yield DatabaseEndpoint(LOCALHOST, server.port, process, admin=server)


@pytest.fixture(scope="session")
def pgbouncer_server(
    servers_dir: Path, postgres_server: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    """The PgBouncer the stack runs (1.24), tracking prepared statements."""
    with pgbouncer_in_front_of(postgres_server, servers_dir / "pgbouncer") as pgbouncer:
        yield pgbouncer


@pytest.fixture(scope="session")
def old_pgbouncer_server(
    servers_dir: Path, postgres_server: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    """Debian 12's PgBouncer 1.18, which cannot track prepared statements: the pooler the
    api's safe mode is for."""
    workdir = servers_dir / "old-pgbouncer"
    with pgbouncer_in_front_of(postgres_server, workdir, DEBIAN_12_PGBOUNCER) as pgbouncer:
        yield pgbouncer


@pytest.fixture(
    params=["pgbouncer_server", "old_pgbouncer_server"],
    ids=["pgbouncer-1.24-caching", "pgbouncer-1.18-safe-mode"],
)
def pooler(request: pytest.FixtureRequest) -> DatabaseEndpoint:
    """Each PgBouncer the engines must be safe behind. Its ``tracks_prepared_statements``
    is the setting the engines get: caching behind 1.24, safe mode behind 1.18."""
    endpoint: DatabaseEndpoint = request.getfixturevalue(request.param)
    return endpoint


@pytest.fixture(scope="session")
def cache_redis_server(servers_dir: Path) -> Iterator[RedisEndpoint]:
    """Redis configured as the cache (LRU, no persistence)."""
    server = RedisServer(workdir=servers_dir / "redis-cache", port=free_port(), role="cache")
    with start(server) as process:
        process.wait_ready()
        yield RedisEndpoint(LOCALHOST, server.port, process)


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server: DatabaseEndpoint) -> DatabaseEndpoint:
    """The test database with every migration applied."""
    runner.upgrade(postgres_server.url)
    return postgres_server


@pytest.fixture(scope="session")
async def api_token(migrated_postgres: DatabaseEndpoint) -> str:
    """An all-scopes API key, for tests that talk to api processes over HTTP (they run
    with the tests' key secret, ``tests.support.keys``)."""
    engine = create_async_engine(migrated_postgres.url)
    try:
        return await make_key(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def db(migrated_postgres: DatabaseEndpoint) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to Postgres, to check what was (not) written."""
    connection = await asyncpg.connect(migrated_postgres.dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def clean_database(db: asyncpg.Connection) -> None:
    await db.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
