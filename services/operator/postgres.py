"""What the operator reads from Postgres: how many connections it admits and how many the
consumers' roles hold right now."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg


class PostgresUnreachableError(Exception):
    """Postgres could not be reached or refused the operator's login."""


@dataclass(frozen=True)
class PostgresTarget:
    """Connection parameters, as the Secret named by ``spec.postgres.secretRef`` holds them."""

    host: str
    port: int
    database: str
    username: str
    password: str = field(repr=False)
    sslmode: str | None = None

    @classmethod
    def from_secret(cls, data: Mapping[str, str]) -> PostgresTarget:
        """From the decoded Secret keys host, port, database, username, password, sslmode."""
        missing = {"host", "database", "username", "password"} - set(data)
        if missing:
            raise ValueError(f"the Postgres Secret lacks the keys {sorted(missing)}")
        return cls(
            host=data["host"],
            port=int(data.get("port") or 5432),
            database=data["database"],
            username=data["username"],
            password=data["password"],
            sslmode=data.get("sslmode") or None,
        )


@dataclass(frozen=True)
class PostgresFacts:
    max_connections: int
    # superuser_reserved_connections, plus reserved_connections on Postgres >= 16.
    reserved_connections: int
    # Client backends per role, the operator's own connection left out.
    connections_by_role: Mapping[str, int]

    @property
    def capacity(self) -> int:
        """Connections Postgres admits to roles without superuser or pg_use_reserved_connections."""
        return self.max_connections - self.reserved_connections

    def in_use(self, roles: set[str] | None) -> int:
        """Connections the ``roles`` hold (every role's when ``roles`` is None)."""
        if roles is None:
            return sum(self.connections_by_role.values())
        return sum(self.connections_by_role.get(role, 0) for role in roles)


_LIMITS = """
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int
       + coalesce(current_setting('reserved_connections', true), '0')::int
"""

_BY_ROLE = """
SELECT coalesce(usename, ''), count(*)::int
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
 GROUP BY 1
"""


async def read_facts(target: PostgresTarget, timeout_s: float = 5.0) -> PostgresFacts:
    """One short connection: the limits and pg_stat_activity by role."""
    try:
        connection = await asyncpg.connect(
            host=target.host,
            port=target.port,
            database=target.database,
            user=target.username,
            password=target.password,
            ssl=target.sslmode,
            timeout=timeout_s,
            command_timeout=timeout_s,
            server_settings={"application_name": "stampede-operator"},
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        raise PostgresUnreachableError(f"{target.host}:{target.port}: {error}") from error
    try:
        max_connections, reserved = await connection.fetchrow(_LIMITS)
        rows = await connection.fetch(_BY_ROLE)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        raise PostgresUnreachableError(f"{target.host}:{target.port}: {error}") from error
    finally:
        await connection.close(timeout=timeout_s)
    return PostgresFacts(
        max_connections=max_connections,
        reserved_connections=reserved,
        connections_by_role={role: count for role, count in rows},
    )
