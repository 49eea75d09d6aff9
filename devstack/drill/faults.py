"""The faults a drill injects into the running local stack, through its supervisord.

Each fault takes the stack down in one way, holds the fault for ``hold_s`` and puts it
right again; it returns when the dependency is back (ready to serve again), and says
when it was injected and when it was back, so recovery is measured from that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from devstack import stack
from devstack.drill.traffic import HOT_PRODUCTS
from devstack.servers import LOCALHOST, Server

POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class Window:
    """When the fault began and when its dependency was back (monotonic seconds).

    ``in_flight_until``: requests started before this moment were in flight when the
    fault struck (held by a process that then died); later ones have no excuse to fail.
    """

    injected: float
    back: float
    in_flight_until: float | None = None


async def until(ready: Callable[[], bool]) -> float:
    """Poll ``ready`` (a fact about another process: nothing to await) until it holds;
    return that moment."""
    while not await asyncio.to_thread(ready):  # noqa: ASYNC110
        await asyncio.sleep(POLL_S)
    return time.monotonic()


class Controls:
    """What a fault may do to the stack: stop and start its programs, signal them, and
    talk to PgBouncer's and Postgres's own consoles."""

    def __init__(self) -> None:
        self.supervisor = stack.supervisor
        self.servers: dict[str, Server] = {server.name: server for server in stack.servers()}

    async def stop(self, name: str) -> None:
        await asyncio.to_thread(self.supervisor.stop, name)

    async def start(self, name: str) -> float:
        """Start ``name`` and return the moment it is ready to serve."""
        await asyncio.to_thread(self.supervisor.ensure_started, name)
        return await until(self.servers[name].is_ready)

    def pid(self, name: str) -> int:
        return self.supervisor.process_pid(name)

    async def wait_restarted(self, name: str, old_pid: int) -> float:
        """Wait until supervisord runs ``name`` again under a new pid."""
        return await until(lambda: self.pid(name) not in (0, old_pid))


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _smtp_client_inodes(client_ports: set[int]) -> set[str]:
    """Inodes of established sockets from those 127.0.0.1 ports to the SMTP sink."""
    remote = f"0100007F:{stack.SMTP_PORT:04X}"
    locals_ = {f"0100007F:{port:04X}" for port in client_ports}
    found: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] in locals_ and fields[2] == remote and fields[3] == "01":
            found.add(fields[9])
    return found


def _held_ports() -> set[int]:
    listing = stack.MAIL_HOLD_FILE.with_name(stack.MAIL_HOLD_FILE.name + ".held")
    try:
        return {int(port) for port in listing.read_text().split()}
    except (OSError, ValueError):
        return set()


@contextlib.asynccontextmanager
async def smtp_answers_held(at_least: int) -> AsyncIterator[set[int]]:
    """The mail sink holds its "250 OK" answers (devstack.mailsink ``--hold-file``) until
    ``at_least`` messages wait for theirs; yields their client ports, of which the
    caller keeps those it killed. A worker killed now is killed mid-send, before the
    server took the message: the one moment the design promises no second email for
    (after the 250 and before the record is the window it cannot close; see
    docs/resilience.md)."""
    stack.MAIL_HOLD_FILE.touch()
    try:
        async with asyncio.timeout(60):
            await until(lambda: len(_held_ports()) >= at_least)
        held = _held_ports()
        yield held
        # Release only once the sink has seen its dead clients go (their messages
        # dropped): released first, it would take and keep a message nobody was told of.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await until(lambda: not (held & _held_ports()))
    finally:
        stack.MAIL_HOLD_FILE.unlink(missing_ok=True)


Fault = Callable[[Controls, float], Awaitable[Window]]


def stopped(program: str) -> Fault:
    """``program`` stopped for ``hold_s``, then started again."""

    async def fault(controls: Controls, hold_s: float) -> Window:
        injected = time.monotonic()
        await controls.stop(program)
        await asyncio.sleep(max(0.0, hold_s - (time.monotonic() - injected)))
        return Window(injected, await controls.start(program))

    return fault


async def pgbouncer_restarted(controls: Controls, hold_s: float) -> Window:
    """A clean restart: SIGINT, PgBouncer's safe shutdown in every version (running
    transactions finish first), and supervisord starts a new process at once."""
    pid = controls.pid("pgbouncer")
    injected = time.monotonic()
    os.kill(pid, signal.SIGINT)
    exited = await until(lambda: not Path(f"/proc/{pid}").exists())
    await controls.wait_restarted("pgbouncer", pid)
    back = await until(controls.servers["pgbouncer"].is_ready)
    return Window(injected, back, in_flight_until=exited)


async def pgbouncer_paused(controls: Controls, hold_s: float) -> Window:
    """``PAUSE``: PgBouncer lets running transactions finish and holds new ones back
    until ``RESUME`` (what an operator does around a Postgres switchover)."""
    console = await asyncpg.connect(
        host=LOCALHOST,
        port=stack.PGBOUNCER_PORT,
        user=stack.APP_USER,
        password=stack.APP_PASSWORD,
        database="pgbouncer",
        statement_cache_size=0,
    )
    try:
        injected = time.monotonic()
        await console.execute(f"PAUSE {stack.APP_DB}")
        await asyncio.sleep(max(0.0, hold_s - (time.monotonic() - injected)))
        await console.execute(f"RESUME {stack.APP_DB}")
        return Window(injected, time.monotonic())
    finally:
        await console.close()


async def api_worker_killed(controls: Controls, hold_s: float) -> Window:
    """``kill -9`` one of gunicorn's workers; gunicorn forks a new one."""
    master = controls.pid("api")
    workers = children(master)
    if not workers:
        raise RuntimeError("gunicorn has no workers to kill")
    injected = time.monotonic()
    os.kill(workers[0], signal.SIGKILL)

    def replaced() -> bool:
        current = children(master)
        return workers[0] not in current and len(current) >= len(workers)

    return Window(injected, await until(replaced))


async def worker_killed_mid_send(controls: Controls, hold_s: float) -> Window:
    """``kill -9`` a Celery child while the SMTP server holds its message unanswered."""
    parent = controls.pid("worker")
    async with smtp_answers_held(at_least=1) as ports:
        port = next(iter(ports))
        inodes = _smtp_client_inodes({port})
        child = next(c for c in children(parent) if _socket_inodes(c) & inodes)
        injected = time.monotonic()
        os.kill(child, signal.SIGKILL)
        ports.intersection_update({port})
    return Window(
        injected, await until(lambda: bool(children(parent)) and child not in children(parent))
    )


async def worker_killed_whole(controls: Controls, hold_s: float) -> Window:
    """``kill -9`` the Celery worker and all its children (a node lost) while both
    children's messages wait for the SMTP server's answer: what they held comes back
    after the broker's visibility timeout."""
    pid = controls.pid("worker")
    async with smtp_answers_held(at_least=len(children(pid))):
        injected = time.monotonic()
        os.killpg(pid, signal.SIGKILL)
    return Window(injected, await controls.wait_restarted("worker", pid))


async def relay_killed(controls: Controls, hold_s: float) -> Window:
    """``kill -9`` the outbox relay; supervisord starts it again."""
    pid = controls.pid("relay")
    injected = time.monotonic()
    os.killpg(pid, signal.SIGKILL)
    return Window(injected, await controls.wait_restarted("relay", pid))


async def rows_locked(controls: Controls, hold_s: float) -> Window:
    """Postgres slow: a transaction holds the hot products' rows (the ones orders take
    stock from) for ``hold_s``, as a long batch job or a stuck migration would."""
    conn = await asyncpg.connect(stack.postgres_dsn(stack.POSTGRES_PORT))
    try:
        async with conn.transaction():
            injected = time.monotonic()
            await conn.execute("SELECT 1 FROM products WHERE id <= $1 FOR UPDATE", HOT_PRODUCTS)
            await asyncio.sleep(hold_s)
        return Window(injected, time.monotonic())
    finally:
        await conn.close()
