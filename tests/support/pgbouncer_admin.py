"""PgBouncer's admin console (the ``pgbouncer`` pseudo-database), read with psql: the
console speaks only the simple query protocol."""

from __future__ import annotations

import subprocess

from devstack.servers import postgres_bin_dir
from tests.support.endpoints import DatabaseEndpoint


def show(pgbouncer: DatabaseEndpoint, what: str) -> list[dict[str, str]]:
    """The rows of ``SHOW <what>``, as the app role (an admin and stats user) sees them."""
    return console(pgbouncer.dsn.rsplit("/", 1)[0] + "/pgbouncer", f"SHOW {what}")


class ConsoleError(Exception):
    """The console refused the command; the message is psql's."""


def console(admin_dsn: str, command: str) -> list[dict[str, str]]:
    """One admin console command as the DSN's user: its rows (none for SET, RELOAD)."""
    result = subprocess.run(
        [
            *(str(postgres_bin_dir() / "psql"), "-X", "-A", "-F", "\t", "-P", "footer=off"),
            *(admin_dsn, "-v", "ON_ERROR_STOP=1", "-c", command),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        raise ConsoleError(result.stderr.strip())
    if not command.upper().startswith("SHOW"):
        return []  # psql printed the command tag
    header, *rows = result.stdout.splitlines()
    names = header.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


def database_stats(pgbouncer: DatabaseEndpoint) -> dict[str, int]:
    """``SHOW STATS``'s counters for the app database, all zero before its first client."""
    for row in show(pgbouncer, "STATS"):
        if row["database"] == pgbouncer.database:
            return {name: int(value) for name, value in row.items() if name != "database"}
    return {}


def config(pgbouncer: DatabaseEndpoint) -> dict[str, str]:
    """``SHOW CONFIG``: every setting's current value."""
    return {row["key"]: row["value"] for row in show(pgbouncer, "CONFIG")}
