"""Sustained mixed traffic over keep-alive connections, every request recorded.

Each client owns one HTTP/1.1 connection (h11 over asyncio streams) and paces itself to
its share of the offered rate, so a slow server makes requests late, never bunched.
Behaving like a well-made client, it reconnects when the server closed an idle
keep-alive connection and resends the request once (safe: reads are idempotent and
every order carries an ``Idempotency-Key``); that resend is counted, not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import h11

CONNECT_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 20.0
READ_CHUNK = 65_536
# Orders take stock from these products only, so the slow-database fault has hot rows.
HOT_PRODUCTS = 50


class Kind(StrEnum):
    CACHED_LIST = "cached list"
    USER = "user read"
    ORDER = "order"


@dataclass(frozen=True, slots=True)
class Mix:
    """What the clients ask for: the share of each request kind and the ids they use."""

    weights: tuple[tuple[Kind, int], ...] = (
        (Kind.CACHED_LIST, 4),
        (Kind.USER, 3),
        (Kind.ORDER, 3),
    )
    categories: int = 20
    users: int = 10_000
    hot_products: int = HOT_PRODUCTS

    def pick(self, rng: random.Random) -> Kind:
        kinds = [kind for kind, _ in self.weights]
        return rng.choices(kinds, [weight for _, weight in self.weights])[0]


@dataclass(slots=True)
class Outcome:
    """One request as the client saw it. ``started`` is seconds since the traffic began."""

    kind: Kind
    started: float
    latency_s: float
    status: int | None = None
    error: str | None = None  # a connection error: no response at all
    closed_by_server: bool = False  # the server ended the keep-alive after this response
    retry_after: bool = False
    problem_json: bool = False
    order_id: int | None = None
    resent: bool = False  # sent again on a new connection after a stale keep-alive


@dataclass
class Traffic:
    """The record of one run: every outcome, and every order key sent."""

    outcomes: list[Outcome] = field(default_factory=list)
    order_keys: list[str] = field(default_factory=list)
    # The stack's development key: user reads and orders are private routes.
    api_key: str = ""

    def between(self, start: float, end: float) -> Iterable[Outcome]:
        return (o for o in self.outcomes if start <= o.started < end)


class _StaleConnection(Exception):
    """The server had closed the connection before our request reached it."""


class _EmptyRead(ConnectionError):
    """EOF before any byte of a response."""


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.h11 = h11.Connection(h11.CLIENT)
        self.used = False
        self.received_any = False

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_S
        )
        self.h11 = h11.Connection(h11.CLIENT)
        self.used = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[h11.Response, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        reused = self.used
        self.used = True
        all_headers = [("Host", f"{self.host}:{self.port}"), *headers]
        if body:
            all_headers.append(("Content-Length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            data += self.h11.send(h11.Data(data=body))
        data += self.h11.send(h11.EndOfMessage())
        try:
            self.writer.write(data)
            await self.writer.drain()
            response, payload = await self._read_response()
        except (ConnectionError, h11.RemoteProtocolError, _EmptyRead) as error:
            if reused and not self.received_any and not isinstance(error, h11.ProtocolError):
                raise _StaleConnection from error
            raise
        return response, payload

    async def _read_response(self) -> tuple[h11.Response, bytes]:
        assert self.reader is not None
        self.received_any = False
        response: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                chunk = await self.reader.read(READ_CHUNK)
                if not chunk and not self.received_any:
                    raise _EmptyRead
                self.received_any = self.received_any or bool(chunk)
                self.h11.receive_data(chunk)
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("closed mid-response")

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def next_cycle(self) -> None:
        self.h11.start_next_cycle()


def _request_for(
    kind: Kind, mix: Mix, rng: random.Random, traffic: Traffic
) -> tuple[str, str, list[tuple[str, str]], bytes]:
    if kind is Kind.CACHED_LIST:
        return "GET", f"/products?category=cat{rng.randrange(mix.categories)}", [], b""
    auth = ("Authorization", f"Bearer {traffic.api_key}")
    if kind is Kind.USER:
        return "GET", f"/users/{rng.randint(1, mix.users)}", [auth], b""
    key = f"drill-{uuid.uuid4().hex}"
    traffic.order_keys.append(key)
    products = rng.sample(range(1, mix.hot_products + 1), 2)
    body = json.dumps(
        {
            "user_id": rng.randint(1, mix.users),
            "items": [{"product_id": p, "quantity": 1} for p in products],
        }
    ).encode()
    headers = [("Content-Type", "application/json"), ("Idempotency-Key", key), auth]
    return "POST", "/orders", headers, body


async def _client(
    host: str,
    port: int,
    rate: float,
    stop: asyncio.Event,
    began: float,
    mix: Mix,
    rng: random.Random,
    traffic: Traffic,
) -> None:
    connection = _Connection(host, port)
    interval = 1.0 / rate
    next_at = time.monotonic() + rng.random() * interval
    try:
        while not stop.is_set():
            wait = next_at - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    return
            next_at = max(next_at + interval, time.monotonic())
            kind = mix.pick(rng)
            request = _request_for(kind, mix, rng, traffic)
            traffic.outcomes.append(await _send(connection, kind, request, began))
    finally:
        connection.close()


async def _send(
    connection: _Connection,
    kind: Kind,
    request: tuple[str, str, list[tuple[str, str]], bytes],
    began: float,
) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(kind=kind, started=started - began, latency_s=0.0)
    for attempt in (1, 2):
        try:
            if connection.writer is None:
                await connection.open()
            response, payload = await asyncio.wait_for(
                connection.exchange(*request), REQUEST_TIMEOUT_S
            )
        except _StaleConnection:
            connection.close()
            outcome.resent = True
            if attempt == 1:
                continue
            outcome.error = "stale connection twice"
        except TimeoutError:
            connection.close()
            outcome.error = "timeout"
        except ConnectionRefusedError:
            connection.close()
            outcome.error = "refused"
        except (OSError, h11.ProtocolError) as error:
            connection.close()
            outcome.error = type(error).__name__
        else:
            _read(outcome, response, payload)
            if connection.reusable():
                connection.next_cycle()
            else:
                outcome.closed_by_server = True
                connection.close()
        break
    outcome.latency_s = time.monotonic() - started
    return outcome


def _read(outcome: Outcome, response: h11.Response, payload: bytes) -> None:
    outcome.status = response.status_code
    headers = {name.lower(): value for name, value in response.headers}
    outcome.retry_after = b"retry-after" in headers
    outcome.problem_json = headers.get(b"content-type", b"").startswith(b"application/problem+json")
    if outcome.kind is Kind.ORDER and response.status_code == 201:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            outcome.order_id = int(json.loads(payload)["id"])


async def run(
    host: str,
    port: int,
    *,
    clients: int,
    rate: float,
    stop: asyncio.Event,
    mix: Mix,
    seed: int,
    traffic: Traffic,
    began: float,
) -> None:
    """``clients`` keep-alive clients offering ``rate`` requests/s in all until ``stop``
    is set; each then finishes the request it has in flight."""
    await asyncio.gather(
        *(
            _client(host, port, rate / clients, stop, began, mix, random.Random(seed + i), traffic)
            for i in range(clients)
        )
    )
