"""Pushing a pool size to a live PgBouncer through its admin console (the ``pgbouncer``
pseudo-database). The console speaks only the simple query protocol: asyncpg's
``execute()`` without arguments sends exactly that."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg


class PushError(Exception):
    """A PgBouncer refused or did not answer the admin connection or a SET."""


@dataclass(frozen=True)
class AdminCredentials:
    """An ``admin_users`` entry of the sidecar (the Secret named by ``adminSecretRef``)."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def from_secret(cls, data: Mapping[str, str]) -> AdminCredentials:
        if not data.get("username") or "password" not in data:
            raise ValueError("the PgBouncer admin Secret needs the keys username and password")
        return cls(username=data["username"], password=data["password"])


def pool_statements(pool_size: int) -> list[str]:
    """What the console runs, and what ``pool.ini`` holds for a restarting pod."""
    if pool_size < 1:
        raise ValueError(f"a pool size must be positive: {pool_size}")
    return [f"SET default_pool_size = {pool_size}", f"SET max_db_connections = {pool_size}"]


async def push_pool_size(
    host: str, port: int, admin: AdminCredentials, pool_size: int, timeout_s: float = 3.0
) -> None:
    """Set ``default_pool_size`` and ``max_db_connections`` on one running PgBouncer.

    A smaller size takes effect at once for new server connections; PgBouncer closes the
    idle ones above it on its next maintenance pass."""
    try:
        connection = await asyncpg.connect(
            host=host,
            port=port,
            user=admin.username,
            password=admin.password,
            database="pgbouncer",
            timeout=timeout_s,
            command_timeout=timeout_s,
            statement_cache_size=0,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        raise PushError(f"{host}:{port}: {error or type(error).__name__}") from error
    try:
        for statement in pool_statements(pool_size):
            await connection.execute(statement)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        raise PushError(f"{host}:{port}: {error or type(error).__name__}") from error
    finally:
        connection.terminate()
