"""A fleet of "pods" for the operator's tests: real PgBouncer sidecars, each on its own
loopback address and the port they all share, in front of one Postgres; and the bursts of
clients that prove the budget holds."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg
import psycopg

from devstack.host import make_traversable, own, unprivileged_user
from devstack.servers import free_port
from services.operator import pool_file
from tests.support.endpoints import (
    APP_DB,
    APP_PASSWORD,
    APP_USER,
    DatabaseEndpoint,
    Restartable,
)
from tests.support.sidecar_pgbouncer import (
    OPERATOR_ADMIN,
    OPERATOR_ADMIN_PASSWORD,
    SidecarPgBouncer,
)


@dataclass
class Pod:
    name: str
    address: str
    pgbouncer: Restartable

    @property
    def server(self) -> SidecarPgBouncer:
        server = self.pgbouncer.server
        assert isinstance(server, SidecarPgBouncer)
        return server


class PodFleet:
    """PgBouncers named pod-1, pod-2, … at 127.0.0.11, 127.0.0.12, … on one port."""

    def __init__(self, servers_dir: Path, postgres: DatabaseEndpoint) -> None:
        self.postgres = postgres
        self.port = free_port()
        self.root = servers_dir / f"fleet-{self.port}"
        own(self.root, unprivileged_user())
        make_traversable(self.root, unprivileged_user())
        self.pods: dict[str, Pod] = {}

    def pool_file(self, name: str) -> Path:
        return self.root / name / "pool" / "pool.ini"

    def start(self, name: str, initial_pool: int, refuses_operator: bool = False) -> Pod:
        """Start pod ``name`` (pod-N) with ``initial_pool`` in its pool.ini, as a new pod
        reads the ConfigMap."""
        index = int(name.rsplit("-", 1)[-1])
        address = f"127.0.0.{10 + index}"
        pool = self.pool_file(name)
        own(pool.parent, unprivileged_user())
        pool.write_text(pool_file.render(initial_pool))
        pool.chmod(0o644)
        server = SidecarPgBouncer(
            workdir=self.root / name / "pgbouncer",
            address=address,
            port=self.port,
            postgres_port=self.postgres.port,
            db_name=APP_DB,
            app_user=APP_USER,
            app_password=APP_PASSWORD,
            pool_file=pool,
            admin_user="someone-else" if refuses_operator else OPERATOR_ADMIN,
        )
        pod = Pod(name, address, Restartable(server))
        pod.pgbouncer.start()
        self.pods[name] = pod
        return pod

    def stop(self, name: str) -> None:
        self.pods.pop(name).pgbouncer.stop()

    def running(self) -> list[Pod]:
        return list(self.pods.values())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name in list(self.pods):
            self.stop(name)


async def console(pod: Pod, command: str) -> list[dict[str, Any]]:
    """A ``SHOW`` command's rows from the pod's admin console, asked as the operator's admin
    (psycopg sends a query without parameters over the simple protocol the console
    requires)."""
    async with await psycopg.AsyncConnection.connect(
        host=pod.address,
        port=pod.server.port,
        user=OPERATOR_ADMIN,
        password=OPERATOR_ADMIN_PASSWORD,
        dbname="pgbouncer",
        autocommit=True,
    ) as connection:
        cursor = await connection.execute(command)
        columns = [column.name for column in cursor.description or []]
        return [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]


async def pool_size(pod: Pod) -> int:
    """``SHOW CONFIG``'s default_pool_size."""
    values = {row["key"]: row["value"] for row in await console(pod, "SHOW CONFIG")}
    # Between the operator's two SETs they differ for a moment: report the pair as one
    # number only when they agree.
    if values["max_db_connections"] != values["default_pool_size"]:
        return -1
    return int(values["default_pool_size"])


async def server_connections(pod: Pod) -> int:
    """Postgres connections the pod's PgBouncer holds now (``SHOW POOLS``, every state)."""
    rows = await console(pod, "SHOW POOLS")
    states = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
    return sum(
        int(row[state]) for row in rows if row["database"] != "pgbouncer" for state in states
    )


async def wait_for_surplus_closed(pods: list[Pod], within_s: float = 10.0) -> float:
    """Seconds until no pod holds more server connections than its pool size. A smaller
    ``default_pool_size`` limits new connections at once; the surplus of open ones is
    closed by PgBouncer's maintenance pass, once idle."""
    started = time.monotonic()
    while True:
        over = {}
        for pod in pods:
            held, size = await server_connections(pod), await pool_size(pod)
            if held > size:
                over[pod.name] = (held, size)
        if not over:
            return time.monotonic() - started
        if time.monotonic() - started > within_s:
            raise AssertionError(f"server connections above the pool after {within_s}s: {over}")
        await asyncio.sleep(0.05)


async def wait_for_pool_sizes(pods: list[Pod], expected: int, within_s: float = 10.0) -> float:
    """Seconds until every pod's live PgBouncer runs ``expected``; fails after ``within_s``."""
    started = time.monotonic()
    while True:
        sizes = {pod.name: await pool_size(pod) for pod in pods}
        if all(size == expected for size in sizes.values()):
            return time.monotonic() - started
        if time.monotonic() - started > within_s:
            raise AssertionError(f"pool sizes after {within_s}s: {sizes}, expected {expected}")
        await asyncio.sleep(0.05)


@dataclass
class BurstResult:
    peak_server_connections: int  # the PgBouncers' (role stampede, not the operator's)
    peak_client_backends: int = 0  # every non-superuser connection, the operator's included
    errors: list[str] = field(default_factory=list)
    queries: int = 0


async def burst(
    postgres: DatabaseEndpoint,
    pods: list[Pod],
    clients_per_pod: int = 12,
    queries_per_client: int = 6,
    hold_s: float = 0.05,
) -> BurstResult:
    """Concurrent clients through every pod's PgBouncer, each transaction holding its
    server connection for ``hold_s``, while Postgres' client backends are counted."""
    assert postgres.admin is not None
    result = BurstResult(0)
    done = asyncio.Event()
    # The sampler is a superuser: it takes a reserved slot, never one of the budget's.
    sampler = await asyncpg.connect(
        host=str(postgres.admin.socket_dir),
        port=postgres.port,
        user="postgres",
        database="postgres",
    )

    async def sample() -> None:
        while not done.is_set():
            pooled, everyone = await sampler.fetchrow(
                "SELECT count(*) FILTER (WHERE usename = $1"
                "                         AND application_name <> 'stampede-operator'),"
                "       count(*) FILTER (WHERE usename <> 'postgres')"
                "  FROM pg_stat_activity WHERE backend_type = 'client backend'",
                APP_USER,
            )
            result.peak_server_connections = max(result.peak_server_connections, pooled)
            result.peak_client_backends = max(result.peak_client_backends, everyone)
            await asyncio.sleep(0.01)

    async def client(pod: Pod) -> None:
        try:
            connection = await asyncpg.connect(
                host=pod.address,
                port=pod.server.port,
                user=APP_USER,
                password=APP_PASSWORD,
                database=APP_DB,
                timeout=10,
            )
        except (OSError, asyncpg.PostgresError) as error:
            result.errors.append(f"{pod.name}: {error}")
            return
        try:
            for _ in range(queries_per_client):
                await connection.execute(f"SELECT pg_sleep({hold_s})")
                result.queries += 1
        except (OSError, asyncpg.PostgresError) as error:
            result.errors.append(f"{pod.name}: {error}")
        finally:
            await connection.close()

    sampling = asyncio.create_task(sample())
    try:
        await asyncio.gather(*(client(pod) for pod in pods for _ in range(clients_per_pod)))
    finally:
        done.set()
        await sampling
        await sampler.close()
    return result
