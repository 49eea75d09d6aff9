"""The servers the tests start, as the code under test reaches them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.pgbouncer_builds import CURRENT_PGBOUNCER, PgBouncerBuild
from devstack.servers import (
    LOCALHOST,
    PgBouncerServer,
    PostgresServer,
    RunningProcess,
    Server,
    free_port,
    start,
)

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
    # Whether a client may keep statements prepared across transactions: always on
    # Postgres itself; through PgBouncer only when it tracks them (>= 1.21).
    tracks_prepared_statements: bool = True

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


@contextmanager
def pgbouncer_in_front_of(
    postgres: DatabaseEndpoint, workdir: Path, build: PgBouncerBuild = CURRENT_PGBOUNCER
) -> Iterator[DatabaseEndpoint]:
    """PgBouncer ``build`` in transaction mode in front of ``postgres``, 4 server
    connections; the current build tracks prepared statements."""
    server = PgBouncerServer(
        workdir=workdir,
        port=free_port(),
        postgres_port=postgres.port,
        db_name=APP_DB,
        app_user=APP_USER,
        app_password=APP_PASSWORD,
        default_pool_size=4,
        max_client_conn=1000,
        build=build,
    )
    with start(server) as process:
        process.wait_ready()
        yield DatabaseEndpoint(
            LOCALHOST,
            server.port,
            process,
            tracks_prepared_statements=server.tracks_prepared_statements,
        )


TABLES = "users, products, orders, order_items, idempotency_keys, outbox, email_deliveries"


class Restartable:
    """A server a test may stop and start again, on the same port and files (a broker
    outage, a pooler gone for a while)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.process: RunningProcess | None = None

    def start(self) -> None:
        self.process = start(self.server)
        self.process.wait_ready()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class RestartablePooler(Restartable):
    """A PgBouncer of a test's own (4 server connections) in front of the test database,
    which the test may stop and start again on the same port (the sidecar restarting,
    the pooler gone for a while)."""

    server: PgBouncerServer

    @property
    def url(self) -> str:
        return (
            f"postgresql+asyncpg://{APP_USER}:{APP_PASSWORD}@{LOCALHOST}:{self.server.port}"
            f"/{APP_DB}"
        )

    def endpoint(self) -> DatabaseEndpoint:
        assert self.process is not None
        return DatabaseEndpoint(LOCALHOST, self.server.port, self.process)


@contextmanager
def restartable_pooler(
    servers_dir: Path, postgres: DatabaseEndpoint, purpose: str
) -> Iterator[RestartablePooler]:
    """A running :class:`RestartablePooler` under ``servers_dir``, stopped on exit."""
    port = free_port()
    pooler = RestartablePooler(
        PgBouncerServer(
            workdir=servers_dir / f"pgbouncer-{purpose}-{port}",
            port=port,
            postgres_port=postgres.port,
            db_name=APP_DB,
            app_user=APP_USER,
            app_password=APP_PASSWORD,
            default_pool_size=4,
        )
    )
    pooler.start()
    try:
        yield pooler
    finally:
        pooler.stop()
