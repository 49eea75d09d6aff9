"""``make bench-scale``: the uncached reads at the demo size and at K times it on the
local stack, measured in alternation, and whether each stays within 10 % of its
demo-size figure.

The two sizes live side by side, each in a database of its own on the stack's Postgres
(``stampede_scale1``, ``stampede_scaleK``: migrated, given the stack's API keys, then
seeded by ``devstack.seed``; kept for the next run, which reuses them while their row
counts match), each behind a PgBouncer of its own started for the run (the stack's
build and settings, free ports). The stack's own database is not touched.

Each size gets an api (``STAMPEDE_CACHE__ENABLED=false``, its database the size's) and
the raw-asyncpg floor straight to Postgres and through the size's PgBouncer, all up at
once. Every read (the point read, the user's orders read, a keyset page deep in the
catalogue, and the floors of the first two; the bench's Lua scripts) is measured a few
seconds at the demo size, then a few seconds at K times, and again, ``--pairs`` times:
a neighbour's load that comes and goes over minutes falls on both sides of a pair alike
(whole runs back to back moved the same row by 50-150 % on this shared machine). Each
pair's K-times rate is divided by its demo rate and the median of those ratios is
judged: PASS at 0.9x or more. The plans of the three reads at both sizes
(``bench/plans.py``) go into the report, ``.stack/scale/``.

    python -m bench.scale [--scale K] [--pairs N] [--duration S] [--warmup S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

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


def _url(port: int, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://{APP_USER}:{APP_PASSWORD}@{servers.LOCALHOST}:{port}/{database}"


@dataclass
class Size:
    """One data size: its database, and its PgBouncer's port once started."""

    scale: int
    pooler_port: int = 0
    seed_line: str = ""
    plans: str = ""

    @property
    def label(self) -> str:
        return "demo" if self.scale == 1 else f"{self.scale}x"

    @property
    def database(self) -> str:
        return f"stampede_scale{self.scale}"

    @property
    def users(self) -> int:
        return DEFAULTS["users"] * self.scale

    @property
    def products(self) -> int:
        return DEFAULTS["products"] * self.scale


# A read's measurements: (demo, K times) a few seconds apart, pair after pair.
Pairs = list[tuple[Row, Row]]


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


@dataclass(frozen=True)
class Read:
    name: str
    script: str
    args: Callable[[Size], tuple[object, ...]]
    server: str  # "api", or the floor's route
    authorization: bool = False


READS = (
    Read(POINT_READ, "random_user.lua", lambda s: (s.users, SEED, "/users/%d"), "api", True),
    Read(
        ORDERS_READ, "random_user.lua", lambda s: (s.users, SEED, "/users/%d/orders"), "api", True
    ),
    Read(DEEP_PAGE, "deep_page.lua", lambda s: (s.products, SEED), "api"),
    *(
        Read(raw(what, route), "random_user.lua", lambda s, p=path: (s.users, SEED, p), route)
        for route in (DIRECT, POOLED)
        for what, path in (("point read", "/users/%d"), ("orders read", "/users/%d/orders"))
    ),
)


def _servers(stack: ExitStack, size: Size) -> dict[str, str]:
    """The size's api (cache off, on the size's database through its PgBouncer) and its
    raw floors straight to Postgres and through that PgBouncer: name -> URL."""
    api_env = {
        **UNCACHED,
        "STAMPEDE_DB__URL": _url(size.pooler_port, size.database, "postgresql+asyncpg"),
    }
    urls = {"api": stack.enter_context(gunicorn(API_APP, f"scale-{size.scale}", api_env))}
    dsns = {
        DIRECT: _url(POSTGRES_PORT, size.database),
        POOLED: _url(size.pooler_port, size.database),
    }
    for route, dsn in dsns.items():
        env = {"STAMPEDE_BENCH_DSN": dsn}
        name = f"scale-{size.scale}-raw-{route}"
        urls[route] = stack.enter_context(gunicorn(RAW_FLOOR_APP, name, env, None, "/"))
    return urls


def alternate(load: Load, demo: Size, big: Size, pairs: int) -> dict[str, Pairs]:
    """Every read, ``pairs`` times at each size in turn (demo, K times, demo, ...), with
    both sizes' servers up throughout: a neighbour's load that comes and goes over
    minutes falls on both sides of a pair alike."""
    found: dict[str, Pairs] = {}
    with ExitStack() as stack:
        servers_of = {size.scale: _servers(stack, size) for size in (demo, big)}
        for read in READS:
            found[read.name] = []
            for _ in range(pairs):
                rows = []
                for size in (demo, big):
                    rows.append(
                        load.measure(
                            f"{read.name}, {size.label}",
                            servers_of[size.scale][read.server],
                            script=read.script,
                            script_args=read.args(size),
                            authorization=bearer() if read.authorization else "",
                        )
                    )
                found[read.name].append((rows[0], rows[1]))
    return found


def comparison(demo: Size, big: Size, found: dict[str, Pairs]) -> tuple[list[str], list[Target]]:
    """A row per read: its median rate at each size, the median of the paired ratios
    (K times / demo) and their range."""
    lines = [
        f"| read | {demo.label} req/s (median) | {big.label} req/s (median) "
        f"| {big.label} / {demo.label}: median of the pairs | the pairs' range |",
        "|---|---:|---:|---:|---|",
    ]
    targets = []
    for name, pairs in found.items():
        known = [(d.rps, b.rps) for d, b in pairs if d.rps and b.rps]
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
    parser.add_argument("--pairs", type=int, default=5, help="pairs per read (default 5)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each one")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.scale < 2 or args.pairs < 1:
        parser.error("--scale must be 2 or more and --pairs 1 or more")
    return args


def report(
    demo: Size, big: Size, found: dict[str, Pairs], lines: list[str], targets: list[Target]
) -> list[str]:
    text = ["# Reads at the demo size and at " + big.label, ""]
    text += [demo.seed_line, "", big.seed_line, "", *lines, "", "```"]
    text += [target.line() for target in targets]
    text += ["```", "", "## Every measurement, in order", ""]
    text += table([row for pairs in found.values() for pair in pairs for row in pair])
    text.append("")
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
        found = alternate(load, demo, big, args.pairs)
    for size in (demo, big):
        counts, taken = asyncio.run(plans.plans(_url(POSTGRES_PORT, size.database)))
        size.plans = plans.markdown(counts, taken)
    lines, targets = comparison(demo, big, found)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text("\n".join(report(demo, big, found, lines, targets)))
    print("\n" + "\n".join(lines) + "\n")
    print("\n".join(target.line() for target in targets))
    print(f"\n{time.monotonic() - started:.0f} s in all; the report, with the plans: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
