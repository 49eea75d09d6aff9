"""``make bench-scale``: the uncached reads at the demo size and at K times it, in
alternating rounds on the local stack, and whether each stays within 10 % of its
demo-size figure.

The two sizes live side by side, each in a database of its own on the stack's Postgres
(``stampede_scale1``, ``stampede_scaleK``: migrated, given the stack's API keys, then
seeded by ``devstack.seed``; kept for the next run, which reuses them while their row
counts match), each behind a
PgBouncer of its own started for the run (the stack's build and settings, free ports).
The stack's own database is not touched.

A round measures, for one size, an api (``STAMPEDE_CACHE__ENABLED=false``, its database
the size's) on the point read, the user's orders read and a keyset page deep in the
catalogue (the bench's Lua scripts), and the raw floors of the first two straight to
Postgres and through the size's PgBouncer. Rounds alternate demo, K times, demo, ...
so both sizes see the same share of a shared machine's noise; each round's K-times
rate is divided by the same round's demo rate and the median of those paired ratios is
judged: PASS at 0.9x or more. The plans of the three reads at both sizes
(``bench/plans.py``) go into the report, ``.stack/scale/``.

    python -m bench.scale [--scale K] [--rounds N] [--duration S] [--warmup S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg

from bench import plans
from bench.report import Row, table
from bench.scenarios import (
    DEEP_PAGE,
    DIRECT,
    ORDERS_READ,
    POINT_READ,
    POOLED,
    UNCACHED,
    Load,
    bearer,
    raw,
)
from bench.servers import API_APP, RAW_FLOOR_APP, gunicorn, ready
from bench.targets import Target
from bench.workload import SEED
from devstack import servers
from devstack.seed import DEFAULTS
from devstack.stack import (
    API_URL,
    APP_DB,
    APP_PASSWORD,
    APP_USER,
    DEV_ENV,
    POSTGRES_PORT,
    STACK_DIR,
    postgres,
)
from services.migrations import runner

# The reads that must hold their figures at scale (issue #12, item 6).
HELD = (POINT_READ, DEEP_PAGE, ORDERS_READ)
WITHIN = 0.9
REPORT_DIR = STACK_DIR / "scale"
_READS = (("point read", "/users/%d", POINT_READ), ("orders read", "/users/%d/orders", ORDERS_READ))


def _url(port: int, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://{APP_USER}:{APP_PASSWORD}@{servers.LOCALHOST}:{port}/{database}"


@dataclass
class Size:
    """One data size: its database, its PgBouncer's port, and the rows of every round."""

    scale: int
    pooler_port: int = 0
    rounds: list[list[Row]] = field(default_factory=list)
    seed_line: str = ""
    plans: str = ""

    @property
    def label(self) -> str:
        return "demo" if self.scale == 1 else f"{self.scale}x"

    @property
    def database(self) -> str:
        return f"stampede_scale{self.scale}"

    def rps(self, round_: int, name: str) -> float | None:
        return next((row.rps for row in self.rounds[round_] if row.name == name), None)


async def _counts(url: str) -> tuple[int, int, int]:
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM products),"
            " (SELECT count(*) FROM orders)"
        )
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        await connection.close()


async def _copy_api_keys(database: str) -> None:
    """The stack's API keys into ``database``, so the bench's key (``make up`` made it)
    opens the private routes there too."""
    source = await asyncpg.connect(_url(POSTGRES_PORT, APP_DB))
    try:
        keys = await source.fetch("SELECT * FROM api_keys")
    finally:
        await source.close()
    target = await asyncpg.connect(_url(POSTGRES_PORT, database))
    try:
        async with target.transaction():
            await target.execute("DELETE FROM api_keys")
            if keys:
                columns = list(keys[0].keys())
                records = [tuple(key.values()) for key in keys]
                await target.copy_records_to_table("api_keys", records=records, columns=columns)
    finally:
        await target.close()


def prepare(size: Size) -> None:
    """The size's database, migrated, with the stack's API keys, and seeded unless it
    already holds that size."""
    postgres().bootstrap(APP_USER, APP_PASSWORD, size.database)
    runner.upgrade(_url(POSTGRES_PORT, size.database, "postgresql+asyncpg"))
    direct = _url(POSTGRES_PORT, size.database)
    asyncio.run(_copy_api_keys(size.database))
    wanted = tuple(DEFAULTS[table] * size.scale for table in ("users", "products", "orders"))
    if asyncio.run(_counts(direct)) == wanted:
        size.seed_line = f"{size.database}: reused ({', '.join(map(str, wanted))})"
        print(size.seed_line, flush=True)
        return
    print(f"seeding {size.database} (--scale {size.scale})", flush=True)
    env = {**os.environ, **DEV_ENV, "STAMPEDE_DB__MIGRATION_URL": direct}
    out = subprocess.run(
        [sys.executable, "-m", "devstack.seed", "--scale", str(size.scale)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    size.seed_line = f"{size.database}: {out.stdout.strip()}"
    print(size.seed_line, flush=True)


@contextmanager
def pooler(size: Size) -> Iterator[None]:
    """A PgBouncer for the size's database, as the stack runs its own, on a free port."""
    server = servers.PgBouncerServer(
        workdir=STACK_DIR / f"scale-pgbouncer-{size.scale}",
        port=servers.free_port(),
        postgres_port=POSTGRES_PORT,
        db_name=size.database,
        app_user=APP_USER,
        app_password=APP_PASSWORD,
    )
    with servers.start(server) as running:
        running.wait_ready()
        size.pooler_port = server.port
        yield


def measure_round(size: Size, load: Load) -> None:
    """One round of the size's reads: the api's three, then the two floors both ways."""
    shop_users = DEFAULTS["users"] * size.scale
    shop_products = DEFAULTS["products"] * size.scale
    api_env = {
        **UNCACHED,
        "STAMPEDE_DB__URL": _url(size.pooler_port, size.database, "postgresql+asyncpg"),
    }
    rows: list[Row] = []
    print(f"-- {size.label}, round {len(size.rounds) + 1}", flush=True)
    with gunicorn(API_APP, f"scale-{size.scale}", api_env) as url:
        for _, path, name in _READS:
            args = (shop_users, SEED, path)
            rows.append(
                load.measure(
                    name,
                    url,
                    script="random_user.lua",
                    script_args=args,
                    authorization=bearer(),
                )
            )
        rows.append(
            load.measure(DEEP_PAGE, url, script="deep_page.lua", script_args=(shop_products, SEED))
        )
    dsns = {
        DIRECT: _url(POSTGRES_PORT, size.database),
        POOLED: _url(size.pooler_port, size.database),
    }
    for route, dsn in dsns.items():
        env = {"STAMPEDE_BENCH_DSN": dsn}
        with gunicorn(RAW_FLOOR_APP, f"scale-{size.scale}-raw-{route}", env, None, "/") as url:
            for what, path, _ in _READS:
                args = (shop_users, SEED, path)
                rows.append(
                    load.measure(raw(what, route), url, script="random_user.lua", script_args=args)
                )
    size.rounds.append(rows)


def comparison(demo: Size, big: Size) -> tuple[list[str], list[Target]]:
    """A row per read: its median rate at each size, the median of the rounds' paired
    ratios (K times / demo) and their range."""
    rounds = min(len(demo.rounds), len(big.rounds))
    names = [row.name for row in big.rounds[0]]
    lines = [
        f"| read | {demo.label} req/s (median) | {big.label} req/s (median) "
        f"| {big.label} / {demo.label}, median of {rounds} rounds | rounds' range |",
        "|---|---:|---:|---:|---|",
    ]
    targets = []
    for name in names:
        pairs = [(demo.rps(r, name), big.rps(r, name)) for r in range(rounds)]
        known = [(d, b) for d, b in pairs if d and b]
        ratios = sorted(b / d for d, b in known)
        median = statistics.median(ratios) if ratios else None
        low = statistics.median(d for d, _ in known) if known else 0.0
        high = statistics.median(b for _, b in known) if known else 0.0
        shown = f"{median:.2f}x" if median is not None else "-"
        spread = f"{ratios[0]:.2f}x-{ratios[-1]:.2f}x" if ratios else "-"
        lines.append(f"| {name} | {low:.0f} | {high:.0f} | {shown} | {spread} |")
        if name in HELD:
            label = f"{name} at {big.label} ≥ 0.9x the demo size"
            targets.append(Target(label, median, WITHIN))
    return lines, targets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--scale", type=int, default=100, help="K (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (default 3)")
    parser.add_argument("--duration", type=int, default=6, help="seconds per read row")
    parser.add_argument("--warmup", type=int, default=2, help="seconds before each row")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.scale < 2 or args.rounds < 1:
        parser.error("--scale must be 2 or more and --rounds 1 or more")
    return args


def report(demo: Size, big: Size, lines: list[str], targets: list[Target]) -> list[str]:
    text = ["# Reads at the demo size and at " + big.label, ""]
    text += [demo.seed_line, "", big.seed_line, "", *lines, "", "```"]
    text += [target.line() for target in targets] + ["```", ""]
    for size in (demo, big):
        for number, rows in enumerate(size.rounds, start=1):
            text += [f"## {size.label}, round {number}", "", *table(rows), ""]
    for size in (demo, big):
        text += [f"## Plans, {size.label}", "", size.plans]
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not ready(API_URL + "/readyz"):
        print(f"the local stack's api does not answer on {API_URL}: run `make up`", file=sys.stderr)
        return 1
    load = Load(args.duration, args.warmup, args.connections, args.threads, None, None, {})
    started = time.monotonic()
    demo, big = Size(1), Size(args.scale)
    for size in (demo, big):
        prepare(size)
    with pooler(demo), pooler(big):
        for _ in range(args.rounds):
            for size in (demo, big):
                measure_round(size, load)
    for size in (demo, big):
        sizes, found = asyncio.run(plans.plans(_url(POSTGRES_PORT, size.database)))
        size.plans = plans.markdown(sizes, found)
    lines, targets = comparison(demo, big)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text("\n".join(report(demo, big, lines, targets)))
    print("\n" + "\n".join(lines) + "\n")
    print("\n".join(target.line() for target in targets))
    print(f"\n{time.monotonic() - started:.0f} s in all; the report, with the plans: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
