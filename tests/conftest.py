"""Session-wide real servers on free ports, each in its own temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from devstack.servers import (
    LOCALHOST,
    PgBouncerServer,
    PostgresServer,
    RedisServer,
    RunningProcess,
    free_port,
    make_traversable,
    start,
    unprivileged_user,
)
from services.migrations import runner

APP_USER = APP_PASSWORD = APP_DB = "stampede"


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Postgres or PgBouncer, as the app role ``stampede`` reaches it over TCP."""

    host: str
    port: int
    process: RunningProcess
    # Postgres only: superuser access over the unix socket, for tests that need DDL.
    admin: PostgresServer | None = None
    user: str = APP_USER
    password: str = APP_PASSWORD
    database: str = APP_DB

    @property
    def dsn(self) -> str:
        """A libpq URL, for asyncpg.connect() and psql."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        """A SQLAlchemy URL, as in ``settings.db.url``."""
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@dataclass(frozen=True)
class RedisEndpoint:
    host: str
    port: int
    process: RunningProcess

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


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


@contextmanager
def pgbouncer_in_front_of(postgres: DatabaseEndpoint, workdir: Path) -> Iterator[DatabaseEndpoint]:
    """PgBouncer in transaction mode in front of ``postgres``, 4 server connections."""
    server = PgBouncerServer(
        workdir=workdir,
        port=free_port(),
        postgres_port=postgres.port,
        db_name=APP_DB,
        app_user=APP_USER,
        app_password=APP_PASSWORD,
        default_pool_size=4,
        max_client_conn=1000,
    )
    with start(server) as process:
        process.wait_ready()
        yield DatabaseEndpoint(LOCALHOST, server.port, process)


@pytest.fixture(scope="session")
def pgbouncer_server(
    servers_dir: Path, postgres_server: DatabaseEndpoint
) -> Iterator[DatabaseEndpoint]:
    with pgbouncer_in_front_of(postgres_server, servers_dir / "pgbouncer") as pgbouncer:
        yield pgbouncer


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


TABLES = "users, products, orders, order_items, idempotency_keys, outbox, email_deliveries"


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
