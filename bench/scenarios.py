"""The bench's three groups of scenarios, each run against the local stack (``make up``).

Every server runs under the api's gunicorn config with the api's worker count, one
scenario at a time, each warmed up first:

* ``cached``: the cached read (``GET /products?category=cat3``) beside the same-bytes
  ceiling, FastAPI hello and bare ASGI, and the same route uncached;
* ``reads``: uncached ``GET /users/{random id}`` and ``GET /users/{random id}/orders``
  (an api with ``STAMPEDE_CACHE__ENABLED=false``) beside the raw-asyncpg floor running
  the same statement straight to Postgres and through the stack's PgBouncer, and a
  keyset page deep in the catalogue (no floor: it is there to be compared across data
  sizes, ``bench/scale.py``);
* ``writes``: ``POST /orders`` (each a new order: its own Idempotency-Key, two products)
  sustained, beside the raw-asyncpg order transaction both ways; the time until every
  confirmation is sent once the load stops; then the api at a fixed offered rate.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

from bench import pipeline
from bench.open_loop import OpenLoopReport, offer
from bench.report import Row
from bench.servers import API_APP, RAW_FLOOR_APP, capture, gunicorn
from bench.workload import SEED, Shop, new_order_body, new_order_request
from bench.wrk import WrkReport, wrk
from devstack.servers import LOCALHOST
from devstack.stack import (
    PGBOUNCER_PORT,
    POSTGRES_PORT,
    STACK_DIR,
    postgres_dsn,
    read_dev_api_key,
)

HOT_PATH = "/products?category=cat3"
UNCACHED = {"STAMPEDE_CACHE__ENABLED": "false"}
NO_LIMITER = {"STAMPEDE_RATE_LIMIT__ENABLED": "false"}
CACHED, SAME_BYTES, HELLO, BARE = "cached", "same bytes", "FastAPI hello", "bare ASGI"
# What the rate limiter (on in every other api row, admitting everything) costs a hit.
CACHED_NO_LIMITER = "cached, no limiter"


def bearer() -> str:
    """The stack's development key (``make up`` made it): user records and orders need one."""
    return f"Bearer {read_dev_api_key()}"


POINT_READ = "GET /users/{id}, uncached"
# A keyset page in the second half of the catalogue (bench/lua/deep_page.lua).
DEEP_PAGE = "GET /products deep page, uncached"
ORDERS_READ = "GET /users/{id}/orders, uncached"
ORDER_WRITE = "POST /orders, sustained"
OFFERED = "POST /orders, offered rate"
# The raw floor's rows: "raw <what>, Postgres" and "raw <what>, PgBouncer".
DIRECT, POOLED = "Postgres", "PgBouncer"
RAW_DSN = {DIRECT: postgres_dsn(POSTGRES_PORT), POOLED: postgres_dsn(PGBOUNCER_PORT)}


def raw(what: str, route: str) -> str:
    return f"raw {what}, {route}"


@dataclass
class Outcome:
    """What a run measured: the table's rows and the write pipeline's figures."""

    rows: list[Row] = field(default_factory=list)
    drain: pipeline.Drain | None = None
    offered: OpenLoopReport | None = None

    def rps(self, name: str) -> float | None:
        return next((row.rps for row in self.rows if row.name == name), None)

    def row(self, name: str) -> Row | None:
        return next((row for row in self.rows if row.name == name), None)


@dataclass(frozen=True)
class Load:
    """How hard and where wrk pushes, and for how long."""

    seconds: int
    warmup: int
    connections: int
    threads: int
    wrk_cpus: str | None
    server_cpus: str | None
    server_env: dict[str, str]

    def measure(
        self,
        name: str,
        url: str,
        *,
        script: str | None = None,
        script_args: tuple[object, ...] = (),
        warmup_args: tuple[object, ...] | None = None,
        seconds: int | None = None,
        floors: tuple[str, ...] = (),
        unit: str = "req/s",
        authorization: str = "",
    ) -> Row:
        headers = (f"Authorization: {authorization}",) if authorization else ()

        def run(seconds: int, args: tuple[object, ...]) -> WrkReport:
            return wrk(
                url,
                seconds=seconds,
                connections=self.connections,
                threads=self.threads,
                cpus=self.wrk_cpus,
                script=script,
                script_args=args,
                headers=headers,
            )

        if self.warmup:
            run(self.warmup, script_args if warmup_args is None else warmup_args)
        report = run(seconds or self.seconds, script_args)
        row = Row(name, report.rps, report.p50_ms, report.p99_ms, report.errors, floors, unit)
        print(
            f"  {name:<38} {row.rps:>9.0f} {unit:<8} p50 {row.p50_ms:7.2f} ms  "
            f"p99 {row.p99_ms:7.2f} ms  errors {row.errors}",
            flush=True,
        )
        return row


def cached(load: Load, outcome: Outcome) -> None:
    captured = STACK_DIR / "bench-response.json"
    scenarios = [
        (CACHED, API_APP, HOT_PATH, {}, (SAME_BYTES, HELLO, BARE)),
        (CACHED_NO_LIMITER, API_APP, HOT_PATH, NO_LIMITER, (SAME_BYTES, HELLO, BARE)),
        ("/products uncached", API_APP, HOT_PATH, UNCACHED, (HELLO, BARE)),
        (
            SAME_BYTES,
            ["bench.floors.same_bytes:app"],
            "/",
            {"STAMPEDE_BENCH_RESPONSE": str(captured)},
            (HELLO, BARE),
        ),
        (HELLO, ["bench.floors.fastapi_hello:app"], "/", {}, (BARE,)),
        (BARE, ["bench.floors.bare_asgi:app"], "/", {}, ()),
    ]
    for name, app, path, extra, floors in scenarios:
        slug = name.replace(" ", "-").replace("/", "").lower()
        ready_path = "/readyz" if app == API_APP else "/"
        with gunicorn(app, slug, {**load.server_env, **extra}, load.server_cpus, ready_path) as url:
            outcome.rows.append(load.measure(name, url + path, floors=floors))
            if name == CACHED:
                captured.write_text(json.dumps(capture(url + path)))


_READS = (("point read", "/users/%d", POINT_READ), ("orders read", "/users/%d/orders", ORDERS_READ))


def reads(load: Load, shop: Shop, outcome: Outcome) -> None:
    with gunicorn(API_APP, "uncached", {**load.server_env, **UNCACHED}, load.server_cpus) as url:
        for what, path, name in _READS:
            floors = (raw(what, DIRECT), raw(what, POOLED))
            args = (shop.users, SEED, path)
            outcome.rows.append(
                load.measure(
                    name,
                    url,
                    script="random_user.lua",
                    script_args=args,
                    floors=floors,
                    authorization=bearer(),
                )
            )
        outcome.rows.append(
            load.measure(DEEP_PAGE, url, script="deep_page.lua", script_args=(shop.products, SEED))
        )
    for route, dsn in RAW_DSN.items():
        env = {**load.server_env, "STAMPEDE_BENCH_DSN": dsn}
        with gunicorn(RAW_FLOOR_APP, f"raw-{route}", env, load.server_cpus, "/") as url:
            for what, path, _ in _READS:
                args = (shop.users, SEED, path)
                outcome.rows.append(
                    load.measure(raw(what, route), url, script="random_user.lua", script_args=args)
                )


@dataclass(frozen=True)
class WriteLoad:
    sustain_s: int
    rate: float
    offered_s: int
    drain_wait_s: float


def writes(load: Load, shop: Shop, plan: WriteLoad, outcome: Outcome) -> None:
    run = f"bench{int(time.time())}"
    order_args = (shop.users, shop.products, SEED)
    with pipeline.relay_paused():
        for route, dsn in RAW_DSN.items():
            env = {**load.server_env, "STAMPEDE_BENCH_DSN": dsn}
            with gunicorn(RAW_FLOOR_APP, f"raw-{route}", env, load.server_cpus, "/") as url:
                name = raw("order transaction", route)
                outcome.rows.append(
                    load.measure(
                        name,
                        url,
                        script="new_orders.lua",
                        script_args=(*order_args, f"{run}-{route}"),
                        warmup_args=(*order_args, f"{run}-{route}-warmup"),
                        unit="orders/s",
                    )
                )
    with gunicorn(API_APP, "writes", load.server_env, load.server_cpus) as url:
        # Every confirmation from here on is timed: the warm-up's are long sent by the end.
        before = pipeline.last_order_id()
        outcome.rows.append(
            load.measure(
                f"{ORDER_WRITE} {plan.sustain_s} s",
                url,
                script="new_orders.lua",
                script_args=(*order_args, f"{run}-sustained"),
                warmup_args=(*order_args, f"{run}-warmup"),
                seconds=plan.sustain_s,
                floors=(raw("order transaction", DIRECT), raw("order transaction", POOLED)),
                unit="orders/s",
                authorization=bearer(),
            )
        )
        outcome.drain = pipeline.wait_for_drain(before, plan.drain_wait_s)
        drain = outcome.drain
        print(
            f"  confirmations: {drain.pending_at_stop} pending when the load stopped "
            f"(at most {drain.peak}), {drain.left} left after {drain.seconds:.1f} s "
            f"({drain.rate:.0f}/s)",
            flush=True,
        )
        outcome.offered = offered(url, shop, plan, run)
        report = outcome.offered
        outcome.rows.append(
            Row(
                f"{OFFERED} {plan.rate:.0f}/s",
                report.rps,
                report.p50_ms,
                report.p99_ms,
                report.failed,
                unit="orders/s",
            )
        )
        print(
            f"  {plan.rate:.0f} orders/s offered for {plan.offered_s} s: {report.rps:.0f}/s "
            f"answered 201, p50 {report.p50_ms:.2f} ms, p99 {report.p99_ms:.2f} ms, "
            f"failed {report.failed}",
            flush=True,
        )


def offered(url: str, shop: Shop, plan: WriteLoad, run: str) -> OpenLoopReport:
    port = int(url.rsplit(":", 1)[1])
    rng = random.Random(SEED)

    authorization = bearer()

    def request(n: int) -> bytes:
        body = new_order_body(rng, shop)
        return new_order_request(body, f"{run}-offered-{n}", LOCALHOST, authorization)

    return asyncio.run(
        offer(LOCALHOST, port, rate=plan.rate, seconds=plan.offered_s, request=request, expect=201)
    )
