"""Real servers for the operator: one Postgres with a small max_connections, PgBouncer
sidecars as "pods", and kmock's emulated Kubernetes API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devstack.servers import LOCALHOST, PostgresServer, free_port, start
from tests.support.emulated_cluster import EmulatedCluster, emulated_api
from tests.support.endpoints import APP_DB, APP_PASSWORD, APP_USER, DatabaseEndpoint
from tests.support.operator_pods import PodFleet

# Small on purpose: the budget is what keeps 12 pods x their pools under it.
MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def budget_postgres(
    servers_dir: Path, request: pytest.FixtureRequest
) -> Iterator[DatabaseEndpoint]:
    """A Postgres of its own (max_connections 40, 3 reserved for superusers)."""
    workdir = servers_dir / f"postgres-{request.module.__name__.rsplit('.', 1)[-1]}"
    server = PostgresServer(
        datadir=workdir / "data",
        port=free_port(),
        socket_dir=workdir / "socket",
        max_connections=MAX_CONNECTIONS,
    )
    with start(server) as process:
        process.wait_ready(timeout=60)
        server.bootstrap(APP_USER, APP_PASSWORD, APP_DB)
        yield DatabaseEndpoint(LOCALHOST, server.port, process, admin=server)


@pytest.fixture
def fleet(servers_dir: Path, budget_postgres: DatabaseEndpoint) -> Iterator[PodFleet]:
    """PgBouncer "pods" in front of that Postgres, started on demand, stopped after."""
    with PodFleet(servers_dir, budget_postgres) as pods:
        yield pods


@pytest.fixture
async def cluster() -> AsyncIterator[EmulatedCluster]:
    """kmock's emulated Kubernetes API, empty."""
    async with emulated_api() as emulator:
        yield EmulatedCluster(emulator)
