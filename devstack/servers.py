"""How to run each backing server: Postgres, PgBouncer and Redis.

The one place that knows their command lines and config files. The local stack hands
``command()`` to supervisord; the test fixtures run it with :func:`start`. Every server
runs in the foreground, listens on 127.0.0.1 only and keeps its files under its own
directory, so it never touches a server that already runs on the machine.

Postgres and PgBouncer refuse to run as root: when we are root they run as
:func:`unprivileged_user`, which must own their directories and be able to reach them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Protocol, Self

from devstack.host import (
    LOCALHOST,
    accepts_tcp,
    as_user,
    free_port,
    make_traversable,
    own,
    port_is_free,
    tail,
    unprivileged_user,
    untraversable_ancestors,
)
from devstack.pgbouncer_builds import CURRENT_PGBOUNCER, PgBouncerBuild

__all__ = [
    "LOCALHOST",
    "PgBouncerServer",
    "PostgresServer",
    "RedisServer",
    "RunningProcess",
    "Server",
    "ServerError",
    "free_port",
    "make_traversable",
    "port_is_free",
    "postgres_bin_dir",
    "start",
    "tail",
    "unprivileged_user",
]


class ServerError(RuntimeError):
    """A server could not be prepared, started or reached."""


def _require_traversable(path: Path, user: str | None) -> None:
    blocked = untraversable_ancestors(path, user)
    if blocked:
        raise ServerError(
            f"user {user!r} cannot reach {path}: {', '.join(map(str, blocked))} "
            "lack the execute bit for it (chmod o+x, or move the directory)"
        )


def postgres_bin_dir() -> Path:
    """The newest Debian-style ``/usr/lib/postgresql/<major>/bin``, else ``postgres`` on PATH."""
    candidates = [
        d / "bin"
        for d in Path("/usr/lib/postgresql").glob("*")
        if d.name.isdigit() and (d / "bin" / "postgres").exists()
    ]
    if candidates:
        return max(candidates, key=lambda bin_dir: int(bin_dir.parent.name))
    found = shutil.which("postgres")
    if found is None:
        raise ServerError("no Postgres server binaries found (run `make deps`)")
    return Path(found).resolve().parent


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if found is None:
        raise ServerError(f"{name} not found (run `make deps`)")
    return found


def _sql_literal(value: str) -> str:
    # standard_conforming_strings is on (the default since 9.1): only quotes need doubling.
    if "\0" in value:
        raise ValueError("SQL literals cannot contain NUL")
    return "'" + value.replace("'", "''") + "'"


def _run(argv: list[str], *, user: str | None, cwd: Path, stdin: str | None = None) -> None:
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        **as_user(user),
    )
    if result.returncode != 0:
        raise ServerError(f"{Path(argv[0]).name} failed:\n{result.stdout}{result.stderr}")


# --- servers -------------------------------------------------------------------------


class Server(Protocol):
    """What the stack and the fixtures need to know to run a server."""

    @property
    def name(self) -> str: ...

    @property
    def run_as(self) -> str | None: ...

    @property
    def stop_signal(self) -> signal.Signals: ...

    @property
    def workdir(self) -> Path: ...

    def prepare(self) -> None:
        """Create directories and config files; idempotent."""

    def command(self) -> list[str]:
        """The foreground command line."""
        ...

    def is_ready(self) -> bool:
        """Whether the server serves clients right now."""
        ...


@dataclass(frozen=True)
class PostgresServer:
    """A Postgres cluster in ``datadir``: TCP on 127.0.0.1, unix socket in ``socket_dir``.

    Local (socket) connections trust everyone, the ``postgres`` superuser included; TCP
    connections need a scram-sha-256 password.
    """

    datadir: Path
    port: int
    socket_dir: Path
    max_connections: int = 200
    bin_dir: Path = field(default_factory=postgres_bin_dir)
    run_as: str | None = field(default_factory=unprivileged_user)
    superuser: str = "postgres"

    name = "postgres"
    # SIGINT is the "fast" shutdown: abort open transactions, checkpoint, exit.
    stop_signal = signal.SIGINT

    @property
    def workdir(self) -> Path:
        return self.datadir.parent

    def prepare(self) -> None:
        self.initdb()

    def initdb(self) -> None:
        """Create the cluster unless ``datadir`` already holds one."""
        own(self.socket_dir, self.run_as)
        own(self.datadir, self.run_as, mode=0o700)
        _require_traversable(self.datadir, self.run_as)
        if (self.datadir / "PG_VERSION").exists():
            return
        _run(
            [
                str(self.bin_dir / "initdb"),
                f"--pgdata={self.datadir}",
                f"--username={self.superuser}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            user=self.run_as,
            cwd=self.datadir,
        )

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": LOCALHOST,
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
            "password_encryption": "scram-sha-256",
            # Log to stderr, which the supervisor (or the fixture) captures.
            "logging_collector": "off",
        }
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
        argv += ["-k", str(self.socket_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def is_ready(self) -> bool:
        probe = [str(self.bin_dir / "pg_isready"), "-q", "-t", "1"]
        result = subprocess.run([*probe, "-h", LOCALHOST, "-p", str(self.port)], check=False)
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> None:
        """Run ``sql`` as the superuser over the unix socket; raise on the first error."""
        _run(
            [
                *(str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"),
                *("-h", str(self.socket_dir), "-p", str(self.port)),
                *("-U", self.superuser, "-d", database),
            ],
            user=None,
            cwd=self.socket_dir,
            stdin=sql,
        )

    def bootstrap(self, app_user: str, app_password: str, app_db: str) -> None:
        """Ensure login role ``app_user`` with ``app_password`` owns database ``app_db``."""
        user, password, db = map(_sql_literal, (app_user, app_password, app_db))
        # The password travels on stdin, never on a command line; every value is a quoted
        # literal and format() quotes it again as identifier or literal. \gexec runs each
        # statement outside a transaction block, as CREATE DATABASE requires.
        script = f"""
            SET password_encryption = 'scram-sha-256';
            SELECT format('CREATE ROLE %I LOGIN', {user})
             WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {user}) \\gexec
            SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', {user}, {password}) \\gexec
            SELECT format('CREATE DATABASE %I OWNER %I', {db}, {user})
             WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {db}) \\gexec
            SELECT format('ALTER DATABASE %I OWNER TO %I', {db}, {user}) \\gexec
        """  # noqa: S608
        self.psql(script)


# After a failed login to Postgres PgBouncer waits this long before trying again, and
# fails new clients meanwhile: its default (15 s) kept the api down for 15 s after
# Postgres was back. The chart's sidecar uses the same value (pgbouncer.serverLoginRetry).
SERVER_LOGIN_RETRY_S = 1


# Prepared statements PgBouncer keeps per server connection (the chart's
# pgbouncer.maxPreparedStatements too): above the distinct statements the api sends, so
# its statements stay prepared on every server connection.
MAX_PREPARED_STATEMENTS = 200


@dataclass(frozen=True)
class PgBouncerServer:
    """PgBouncer in transaction mode in front of one database of a Postgres server.

    ``build`` is the current PgBouncer by default, tracking prepared statements across
    server connections; Debian 12's 1.18 (which cannot) runs with no such setting.
    """

    workdir: Path
    port: int
    postgres_port: int
    db_name: str
    app_user: str
    app_password: str
    postgres_host: str = LOCALHOST
    default_pool_size: int = 20
    max_client_conn: int = 1000
    build: PgBouncerBuild = CURRENT_PGBOUNCER
    max_prepared_statements: int = MAX_PREPARED_STATEMENTS
    # The operator's pool file, %included last as in the chart's sidecar (it overrides
    # default_pool_size); written with default_pool_size when it does not exist yet.
    pool_include: Path | None = None
    run_as: str | None = field(default_factory=unprivileged_user)

    name = "pgbouncer"

    @property
    def stop_signal(self) -> signal.Signals:
        return self.build.immediate_shutdown_signal

    @property
    def ini_path(self) -> Path:
        return self.workdir / "pgbouncer.ini"

    @property
    def tracks_prepared_statements(self) -> bool:
        """Whether a client may keep statements prepared across its transactions."""
        return self.build.can_track_prepared_statements and self.max_prepared_statements > 0

    def prepare(self) -> None:
        self.write_config()

    def write_config(self) -> None:
        own(self.workdir, self.run_as, mode=0o700)
        _require_traversable(self.workdir, self.run_as)
        _require_traversable(self.build.binary, self.run_as)
        userlist = self.workdir / "userlist.txt"
        # A plain password lets PgBouncer answer the client's scram exchange and run its
        # own against Postgres.
        quoted = [
            '"' + value.replace('"', '""') + '"' for value in (self.app_user, self.app_password)
        ]
        self._write(userlist, " ".join(quoted) + "\n")
        self._write(
            self.ini_path,
            f"""\
[databases]
{self.db_name} = host={self.postgres_host} port={self.postgres_port} dbname={self.db_name}

[pgbouncer]
listen_addr = {LOCALHOST}
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {userlist}
admin_users = {self.app_user}
stats_users = {self.app_user}
pool_mode = transaction
default_pool_size = {self.default_pool_size}
max_client_conn = {self.max_client_conn}
server_login_retry = {SERVER_LOGIN_RETRY_S}
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile =
pidfile =
syslog = 0
{self._prepared_statements_line()}{self._pool_include_line()}""",
        )

    def _pool_include_line(self) -> str:
        if self.pool_include is None:
            return ""
        self.pool_include.parent.mkdir(parents=True, exist_ok=True)
        self.pool_include.parent.chmod(0o755)
        if not self.pool_include.exists():
            size = self.default_pool_size
            self.pool_include.write_text(
                f"default_pool_size = {size}\nmax_db_connections = {size}\n"
            )
            self.pool_include.chmod(0o644)
        return f"%include {self.pool_include}\n"

    def _prepared_statements_line(self) -> str:
        # PgBouncer < 1.21 refuses to start on a key it does not know.
        if not self.build.can_track_prepared_statements:
            return ""
        return f"max_prepared_statements = {self.max_prepared_statements}\n"

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o600)
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def command(self) -> list[str]:
        if not self.build.binary.exists():
            raise ServerError(
                f"PgBouncer {self.build.version} not found at {self.build.binary}: "
                f"{self.build.install_hint}"
            )
        return [str(self.build.binary), str(self.ini_path)]

    def is_ready(self) -> bool:
        return accepts_tcp(self.port)


RedisRole = Literal["cache", "broker"]


@dataclass(frozen=True)
class RedisServer:
    """A Redis configured for its role.

    ``cache``: bounded memory, evicts least-recently-used keys, keeps nothing on disk.
    ``broker``: never evicts (a lost message is a lost job), append-only file in
    ``workdir``; RDB snapshots are off because the AOF already has every write.
    """

    workdir: Path
    port: int
    role: RedisRole
    maxmemory: str = "256mb"

    run_as: str | None = None
    stop_signal = signal.SIGTERM

    @property
    def name(self) -> str:
        return f"redis-{self.role}"

    def prepare(self) -> None:
        own(self.workdir, self.run_as)

    def command(self) -> list[str]:
        argv = [_binary("redis-server"), "--port", str(self.port), "--bind", LOCALHOST]
        argv += ["--daemonize", "no", "--protected-mode", "yes", "--dir", str(self.workdir)]
        argv += ["--save", ""]
        if self.role == "cache":
            argv += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "allkeys-lru"]
            argv += ["--appendonly", "no"]
        else:
            # Bounded too: full, it refuses new tasks instead of growing until killed.
            argv += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
            argv += ["--appendonly", "yes"]
        return argv

    def is_ready(self) -> bool:
        return accepts_tcp(self.port)


# --- running a server without a supervisor (tests) -----------------------------------


class RunningProcess:
    """A server started by :func:`start`; a context manager that stops it on exit."""

    def __init__(self, server: Server, process: subprocess.Popen[bytes], log: IO[bytes]):
        self.server = server
        self.process = process
        self._log = log

    @property
    def log_path(self) -> Path:
        return Path(self._log.name)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the server serves clients; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while not self.server.is_ready():
            code = self.process.poll()
            if code is not None:
                raise ServerError(f"{self.server.name} exited with code {code}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.server.name} not ready after {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down cleanly (Postgres: fast shutdown); SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(self.server.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start(server: Server, log_path: Path | None = None) -> RunningProcess:
    """Prepare and launch ``server``; its output goes to ``log_path``.

    The process gets its own session, so a Ctrl-C meant for the caller does not reach
    it: the caller stops it with :meth:`RunningProcess.stop`.
    """
    server.prepare()
    if log_path is None:
        log_path = server.workdir / f"{server.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    try:
        process = subprocess.Popen(
            server.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=server.workdir,
            start_new_session=True,
            **as_user(server.run_as),
        )
    except BaseException:
        log.close()
        raise
    return RunningProcess(server, process, log)
