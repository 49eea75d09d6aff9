"""The local stack under supervisord: Postgres, PgBouncer, cache Redis, broker Redis, an
SMTP sink, the API, the Celery worker and the outbox relay.

Everything lives in ``<repo>/.stack/``; the data directory survives ``down``/``up``. The
ports are fixed so that the ``dev`` settings profile (services/core/settings.py) finds
every server without configuration.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import asyncpg

from devstack.host import untraversable_ancestors
from devstack.mailsink import MailSink
from devstack.monitoring import (
    PgBouncerExporter,
    PostgresExporter,
    PrometheusServer,
    RedisExporter,
    Target,
)
from devstack.servers import (
    LOCALHOST,
    PgBouncerServer,
    PostgresServer,
    RedisServer,
    Server,
    make_traversable,
    port_is_free,
    tail,
    unprivileged_user,
)
from devstack.supervision import VENV_BIN, Program, Supervisor
from services.api import keys
from services.core.api_keys import ALL_SCOPES, token_prefix
from services.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
STACK_DIR = REPO / ".stack"

# Fixed, documented ports: off the services' defaults (a Postgres or Redis already on the
# machine keeps 5432/6379) and below Linux's ephemeral range (32768-60999), where any
# outgoing connection could be holding one when `make up` starts.
POSTGRES_PORT = 25432
PGBOUNCER_PORT = 26432
CACHE_REDIS_PORT = 26379
BROKER_REDIS_PORT = 26380
SMTP_PORT = 25025
MAIL_WEB_PORT = 8025
API_PORT = 8000
API_METRICS_PORT = 29100
WORKER_METRICS_PORT = 29101
RELAY_METRICS_PORT = 29102
OPERATOR_METRICS_PORT = 29108
PROMETHEUS_PORT = 9090
# The exporters' usual ports plus 20000, so system-wide exporters can keep theirs.
EXPORTER_PORTS = {
    "redis-cache": 29121,
    "redis-broker": 29122,
    "postgres": 29187,
    "pgbouncer": 29127,
}
PORTS = {
    "postgres": POSTGRES_PORT,
    "pgbouncer": PGBOUNCER_PORT,
    "redis-cache": CACHE_REDIS_PORT,
    "redis-broker": BROKER_REDIS_PORT,
    "mail-sink (SMTP)": SMTP_PORT,
    "mail-sink (web)": MAIL_WEB_PORT,
    "api": API_PORT,
    "api-metrics": API_METRICS_PORT,
    "worker-metrics": WORKER_METRICS_PORT,
    "relay-metrics": RELAY_METRICS_PORT,
    "operator-metrics": OPERATOR_METRICS_PORT,
    "prometheus": PROMETHEUS_PORT,
    **{f"{name}-exporter": port for name, port in EXPORTER_PORTS.items()},
}
ALERT_RULES = REPO / "charts" / "stampede" / "files" / "alerts.rules.yaml"

# Local-only credentials, the same as the dev settings profile's.
APP_USER = APP_PASSWORD = APP_DB = "stampede"  # noqa: S105
API_URL = f"http://{LOCALHOST}:{API_PORT}"
CACHE_REDIS_URL = f"redis://{LOCALHOST}:{CACHE_REDIS_PORT}/0"
BROKER_URL = f"redis://{LOCALHOST}:{BROKER_REDIS_PORT}/0"
MAIL_DIR = STACK_DIR / "mail"
# The fault drill's switch: while it exists the mail sink holds its "250 OK" answers.
MAIL_HOLD_FILE = STACK_DIR / "mail-hold"
MAIL_URL = f"http://{LOCALHOST}:{MAIL_WEB_PORT}/"
DEV_ENV = {"STAMPEDE_PROFILE": "dev"}

API_COMMAND = [
    str(VENV_BIN / "gunicorn"),
    *("-c", "python:services.api.gunicorn_conf"),
    "services.api.main:create_app()",
]
API_ENV = {
    **DEV_ENV,
    # The bench and the drill send thousands of requests a second from one address with
    # one key: the limiter runs (its cost is in the bench) but admits them.
    "STAMPEDE_RATE_LIMIT__KEY_RATE_PER_S": "1000000",
    "STAMPEDE_RATE_LIMIT__KEY_BURST": "1000000",
    "STAMPEDE_RATE_LIMIT__ANONYMOUS_RATE_PER_S": "1000000",
    "STAMPEDE_RATE_LIMIT__ANONYMOUS_BURST": "1000000",
    "STAMPEDE_SERVER__BIND": f"{LOCALHOST}:{API_PORT}",
    "STAMPEDE_SERVER__WORKERS": "2",
    "STAMPEDE_METRICS__BIND": f"{LOCALHOST}:{API_METRICS_PORT}",
    "STAMPEDE_METRICS__MULTIPROC_DIR": str(STACK_DIR / "api-metrics"),
}
# The worker: prefork children (concurrency from the settings), each holding one message
# at a time (-O fair, prefetch 1). No gossip/mingle: they only chat between workers.
WORKER_COMMAND = [
    str(VENV_BIN / "celery"),
    # --quiet: no banner on stdout, so every line of the log is JSON (as in the chart).
    *("-A", "services.worker.app", "--quiet", "worker"),
    *("--pool=prefork", "-O", "fair", "--without-gossip", "--without-mingle"),
    "--loglevel=INFO",
]
RELAY_COMMAND = [sys.executable, "-m", "services.worker.relay"]
WORKER_ENV = {
    **DEV_ENV,
    "STAMPEDE_WORKER__METRICS_PORT": str(WORKER_METRICS_PORT),
    "STAMPEDE_WORKER__METRICS_MULTIPROC_DIR": str(STACK_DIR / "worker-metrics"),
}
RELAY_ENV = {
    **DEV_ENV,
    "STAMPEDE_RELAY__METRICS_PORT": str(RELAY_METRICS_PORT),
    "STAMPEDE_RELAY__HEARTBEAT_FILE": str(STACK_DIR / "relay.heartbeat"),
}
# The ConnectionBudget operator's reconcile against the local PgBouncer (docs/operator.md):
# a budget file instead of the Kubernetes API, the pool file PgBouncer %includes instead of
# a ConfigMap. Its budget keeps the pool at the stack's default of 20.
BUDGET_FILE = REPO / "devstack" / "connection-budget.yaml"
POOL_FILE = STACK_DIR / "pgbouncer-pool" / "pool.ini"
OPERATOR_STATUS_FILE = STACK_DIR / "operator-status.yaml"
OPERATOR_COMMAND = [
    *(sys.executable, "-m", "services.operator"),
    *("--budget-file", str(BUDGET_FILE), "--status-file", str(OPERATOR_STATUS_FILE)),
]
OPERATOR_ENV = {
    "STAMPEDE_OPERATOR_METRICS_PORT": str(OPERATOR_METRICS_PORT),
    "STAMPEDE_OPERATOR_METRICS_ADDR": LOCALHOST,
}
BACKGROUND_PROGRAMS = ("worker", "relay", "operator")
MIGRATE_COMMAND = [sys.executable, "-m", "services.migrations", "upgrade"]
SEED_COMMAND = [sys.executable, "-m", "devstack.seed", "--if-empty"]
# The all-scopes key `make up` creates once, for curl, scripts, the bench and the drill.
DEV_API_KEY_FILE = STACK_DIR / "dev-api-key"


class StackError(RuntimeError):
    """The stack could not be brought up (the message says what to do)."""


supervisor = Supervisor(STACK_DIR)


def postgres_dsn(port: int) -> str:
    """A libpq URL for the app role (SQLAlchemy: ``postgresql+asyncpg://...``)."""
    return f"postgresql://{APP_USER}:{APP_PASSWORD}@{LOCALHOST}:{port}/{APP_DB}"


def postgres() -> PostgresServer:
    return PostgresServer(
        datadir=STACK_DIR / "pgdata", port=POSTGRES_PORT, socket_dir=STACK_DIR / "run"
    )


def servers() -> list[Server]:
    """The backing servers, in start order."""
    pgbouncer = PgBouncerServer(
        workdir=STACK_DIR / "pgbouncer",
        port=PGBOUNCER_PORT,
        postgres_port=POSTGRES_PORT,
        db_name=APP_DB,
        app_user=APP_USER,
        app_password=APP_PASSWORD,
        pool_include=POOL_FILE,
    )
    cache_redis = RedisServer(
        workdir=STACK_DIR / "redis-cache", port=CACHE_REDIS_PORT, role="cache"
    )
    broker_redis = RedisServer(
        workdir=STACK_DIR / "redis-broker", port=BROKER_REDIS_PORT, role="broker"
    )
    mail_sink = MailSink(
        mail_dir=MAIL_DIR, smtp_port=SMTP_PORT, http_port=MAIL_WEB_PORT, hold_file=MAIL_HOLD_FILE
    )
    return [postgres(), pgbouncer, cache_redis, broker_redis, mail_sink, *monitoring()]


def monitoring() -> list[Server]:
    """The exporters the chart runs as sidecars, and a Prometheus scraping everything
    with the labels the chart's ServiceMonitors give (see devstack.monitoring)."""
    exporters: list[RedisExporter | PostgresExporter | PgBouncerExporter] = [
        RedisExporter(
            STACK_DIR / "exporters", EXPORTER_PORTS["redis-cache"], CACHE_REDIS_PORT, "cache"
        ),
        RedisExporter(
            STACK_DIR / "exporters", EXPORTER_PORTS["redis-broker"], BROKER_REDIS_PORT, "broker"
        ),
        PostgresExporter(
            STACK_DIR / "exporters", EXPORTER_PORTS["postgres"], postgres_dsn(POSTGRES_PORT)
        ),
        PgBouncerExporter(
            STACK_DIR / "exporters",
            EXPORTER_PORTS["pgbouncer"],
            PGBOUNCER_PORT,
            APP_USER,
            APP_PASSWORD,
        ),
    ]
    prometheus = PrometheusServer(
        workdir=STACK_DIR / "prometheus",
        port=PROMETHEUS_PORT,
        targets=(
            Target(component="api", port=API_METRICS_PORT),
            Target(component="worker", port=WORKER_METRICS_PORT),
            Target(component="relay", port=RELAY_METRICS_PORT),
            Target(component="operator", port=OPERATOR_METRICS_PORT),
            *(exporter.target for exporter in exporters),
        ),
        rule_files=(ALERT_RULES,),
    )
    return [*exporters, prometheus]


def programs() -> list[Program]:
    backing = [Program.for_server(server, priority=10) for server in servers()]
    # Started by `up` once migrations have run, never by supervisord on its own.
    api = Program(
        name="api",
        command=API_COMMAND,
        directory=REPO,
        autostart=False,
        priority=50,
        environment=API_ENV,
    )
    # The worker and the relay need the schema too; `up` starts them after migrations.
    worker, relay = (
        Program(
            name=name,
            command=command,
            directory=REPO,
            autostart=False,
            priority=60,
            environment=environment,
        )
        for name, command, environment in (
            ("worker", WORKER_COMMAND, WORKER_ENV),
            ("relay", RELAY_COMMAND, RELAY_ENV),
        )
    )
    operator = Program(
        name="operator",
        command=OPERATOR_COMMAND,
        directory=REPO,
        autostart=False,
        priority=60,
        environment=OPERATOR_ENV,
    )
    return [*backing, api, worker, relay, operator]


def up() -> None:
    """Start (or complete) the stack, migrate, seed once, start the API, print the URLs.

    Harmless while the stack runs: it only starts what is not running.
    """
    STACK_DIR.mkdir(exist_ok=True)
    STACK_DIR.chmod(0o755)
    MAIL_HOLD_FILE.unlink(missing_ok=True)  # left by a drill that was interrupted
    _let_servers_reach_the_stack()
    running = supervisor.is_running()
    if not running:
        busy = [f"{port} ({name})" for name, port in PORTS.items() if not port_is_free(port)]
        if busy:
            raise StackError(
                f"in use by another process: {', '.join(busy)}; stop it first "
                "(the local stack needs fixed ports that the dev profile points at)"
            )
    backing = servers()
    for server in backing:
        server.prepare()
    supervisor.write_config(programs(), directory=REPO)
    if running:
        supervisor.update()
    else:
        supervisor.start_daemon()
    for server in backing:
        supervisor.ensure_started(server.name)
        _wait_for(server.name, server.is_ready, timeout=60)
    postgres().bootstrap(APP_USER, APP_PASSWORD, APP_DB)
    _run_step("migrations", MIGRATE_COMMAND)
    _run_step("seed", SEED_COMMAND)
    api_key, created = ensure_dev_api_key(DEV_API_KEY_FILE, _dev_key_is_active, _create_dev_key)
    if created:
        print(f"Created the development API key (all scopes): {DEV_API_KEY_FILE}")
    supervisor.ensure_started("api")
    for name in BACKGROUND_PROGRAMS:
        supervisor.ensure_started(name)
    _wait_for("api", _api_ready, timeout=90)
    for name in BACKGROUND_PROGRAMS:
        _wait_for(name, functools.partial(_running, name), timeout=60)
    _print_urls(api_key)


def ensure_dev_api_key(
    path: Path, is_active: Callable[[str], bool], create: Callable[[], str]
) -> tuple[str, bool]:
    """The development key in ``path``, created (and written, owner-only) when there is
    none or the stack's database no longer knows it. Returns (token, created)."""
    if path.exists():
        token = path.read_text().strip()
        if token and is_active(token):
            return token, False
    token = create()
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return token, True


def read_dev_api_key() -> str:
    """The key `make up` wrote, for the tools that call the stack's private routes."""
    if not DEV_API_KEY_FILE.exists():
        raise StackError(f"no {DEV_API_KEY_FILE}: run `make up` first")
    return DEV_API_KEY_FILE.read_text().strip()


def _dev_key_is_active(token: str) -> bool:
    prefix = token_prefix(token)
    if prefix is None:
        return False

    async def active() -> bool:
        connection = await asyncpg.connect(postgres_dsn(POSTGRES_PORT))
        try:
            found = await connection.fetchval(
                "SELECT count(*) FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > now())",
                prefix,
            )
        finally:
            await connection.close()
        return bool(found)

    return asyncio.run(active())


def _create_dev_key() -> str:
    settings = Settings(profile="dev")
    return asyncio.run(keys.create(settings, name="make up (development)", scopes=ALL_SCOPES))


def _let_servers_reach_the_stack() -> None:
    """Postgres and PgBouncer run unprivileged and must be able to enter ``.stack/``.

    A clone under a private directory (root's home, a mktemp dir) blocks them; adding
    only the search bit (o+x: enter by name, not list) to those directories is the
    smallest change that works, and it is said out loud.
    """
    user = unprivileged_user()
    blocked = untraversable_ancestors(STACK_DIR, user)
    make_traversable(STACK_DIR, user)
    if blocked:
        print(f"Let user {user!r} enter (o+x): {', '.join(map(str, blocked))}")


def down() -> None:
    """Stop every program and supervisord; return once the ports are free."""
    if not supervisor.is_running():
        print("The local stack is not running.")
        return
    supervisor.shutdown()
    _wait_for("free ports", lambda: all(map(port_is_free, PORTS.values())), timeout=30)
    print("The local stack is stopped; its data stays in", STACK_DIR)


def status() -> int:
    """Print the programs' states; the exit code is supervisorctl's (3: not running)."""
    if not supervisor.is_running():
        print("The local stack is not running.")
        return 3
    return supervisor.ctl("status")


def _run_step(name: str, command: list[str]) -> None:
    print(f"Running {name}: {' '.join(command[1:])}", flush=True)
    result = subprocess.run(command, cwd=REPO, env={**os.environ, **DEV_ENV}, check=False)
    if result.returncode != 0:
        raise StackError(f"{name} failed (exit code {result.returncode}); see the output above")


def _running(name: str) -> bool:
    state = supervisor.process_state(name)
    if state in {"FATAL", "EXITED", "BACKOFF"}:
        raise StackError(f"the {name} exited:\n{tail(supervisor.log_path(name))}")
    return state == "RUNNING"


def _api_ready() -> bool:
    if supervisor.process_state("api") in {"FATAL", "EXITED", "STOPPED"}:
        raise StackError(f"the api exited:\n{tail(supervisor.log_path('api'))}")
    try:
        with urllib.request.urlopen(f"{API_URL}/readyz", timeout=2) as response:  # noqa: S310
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_for(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            log = supervisor.log_path(what)
            detail = f":\n{tail(log)}" if log.exists() else ""
            raise StackError(f"{what} not ready after {timeout:.0f}s{detail}")
        time.sleep(0.2)


def _print_urls(api_key: str) -> None:
    rows = [
        ("API", API_URL),
        ("API docs", f"{API_URL}/docs"),
        ("API key", f"{api_key}  (all scopes; also in {DEV_API_KEY_FILE})"),
        ("Postgres", f"{postgres_dsn(POSTGRES_PORT)}  (direct: migrations, psql)"),
        ("PgBouncer", f"{postgres_dsn(PGBOUNCER_PORT)}  (transaction pooling: the API)"),
        ("Redis cache", CACHE_REDIS_URL),
        ("Broker", f"{BROKER_URL}  (Celery; worker + outbox relay running)"),
        ("Mail", f"{MAIL_URL}  (every email the worker sends; SMTP {LOCALHOST}:{SMTP_PORT})"),
        ("Mail files", f"{MAIL_DIR}/*.eml"),
        ("Prometheus", f"http://{LOCALHOST}:{PROMETHEUS_PORT}"),
        ("API metrics", f"http://{LOCALHOST}:{API_METRICS_PORT}/metrics"),
        (
            "Operator",
            f"http://{LOCALHOST}:{OPERATOR_METRICS_PORT}/metrics  (status: {OPERATOR_STATUS_FILE})",
        ),
        ("Logs", str(supervisor.log_dir)),
    ]
    print("\nThe local stack is up:")
    for label, value in rows:
        print(f"  {label:<12} {value}")
    print("Stop it with `make down`; `make status` shows its processes.")
