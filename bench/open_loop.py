"""An open-loop load generator: requests go out at a fixed offered rate whatever the pace
of the answers, and each latency is measured from when its request was due, so a stall
shows in the percentiles instead of slowing the load down (no coordinated omission).

Why not ``hey -q`` or ``h2load --rps``: both send one fixed body and fixed headers, so
every order would carry the same Idempotency-Key (all but the first a replay) or none,
and the same two products (every order queueing on the same two row locks). Orders need
a new key and their own products per request, as the closed-loop Lua script sends them.
At a few hundred requests per second this costs the generator a few percent of a core.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A request that finds every open connection busy opens another, up to this many.
MAX_CONNECTIONS = 256
# From when a request was due, waiting for a connection included: an overloaded server
# gives failures, not a run that lasts as long as its backlog.
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class OpenLoopReport:
    offered_rps: float
    seconds: float
    latencies_ms: Sequence[float]  # of the answers with the expected status, sorted
    failed: int = 0  # another status, a timeout or a broken connection

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``ordered`` (ascending); nan if empty."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def status_and_length(head: bytes) -> tuple[int, int]:
    """The status and Content-Length of an HTTP/1.1 response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    return status, 0


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Connections:
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[Connection] = []
        self._open = 0
        self._freed = asyncio.Condition()

    async def take(self) -> Connection:
        async with self._freed:
            while not self._idle and self._open >= MAX_CONNECTIONS:
                await self._freed.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return await asyncio.open_connection(self._host, self._port)
        except OSError:
            await self.drop(None)
            raise

    async def give_back(self, connection: Connection) -> None:
        async with self._freed:
            self._idle.append(connection)
            self._freed.notify()

    async def drop(self, connection: Connection | None) -> None:
        """Close ``connection`` (None: one that failed to open) and free its place."""
        if connection is not None:
            connection[1].close()
        async with self._freed:
            self._open -= 1
            self._freed.notify()

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()


async def _exchange(
    connections: _Connections, request: bytes, due: float, expect: int, tally: _Tally
) -> None:
    taken: list[Connection] = []

    async def send_and_read() -> int:
        taken.append(await connections.take())
        reader, writer = taken[0]
        writer.write(request)
        status, length = status_and_length(await reader.readuntil(b"\r\n\r\n"))
        await reader.readexactly(length)
        return status

    try:
        status = await asyncio.wait_for(send_and_read(), due + TIMEOUT_S - time.perf_counter())
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
        tally.failed += 1
        if taken:
            await connections.drop(taken[0])
        return
    await connections.give_back(taken[0])
    if status == expect:
        tally.latencies_ms.append((time.perf_counter() - due) * 1e3)
    else:
        tally.failed += 1


async def offer(
    host: str,
    port: int,
    *,
    rate: float,
    seconds: float,
    request: Callable[[int], bytes],
    expect: int = 200,
) -> OpenLoopReport:
    """Send ``request(n)`` (raw HTTP/1.1 bytes) for n = 0, 1, ... at ``rate`` per second
    for ``seconds``; wait for the last answers; report answers with status ``expect``."""
    connections = _Connections(host, port)
    tally = _Tally()
    tasks = []
    start = time.perf_counter()
    try:
        for n in range(round(rate * seconds)):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(_exchange(connections, request(n), due, expect, tally))
            )
        await asyncio.gather(*tasks)
    finally:
        connections.close()
    return OpenLoopReport(rate, seconds, sorted(tally.latencies_ms), tally.failed)
