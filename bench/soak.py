"""``make soak``: a million mixed requests against the local stack, and whether anything
grew that should not.

The load is the bench's own: wrk with ``bench/lua/mixed.lua`` (cached list pages,
products, users and their orders, pages after random cursors that miss the cache, new
orders), run in time slices until the requests add up. After each slice, with the load
stopped for a moment, it records per api worker (the stack's gunicorn children) the
resident set (``VmRSS``) and the open file descriptors, and the connections Postgres
(client backends), PgBouncer (clients and server connections of the app's pool) and both
Redis (``connected_clients``) hold, beside the slice's rate, p99 and errors.

It passes only if, after the warm-up (the first ``--warmup`` requests, ``WARMUP_REQUESTS``):
every api worker's RSS grew less than 5 %, no worker's descriptors and no connection
count grew (the highest count in the last third of the slices is not above the highest
in the first third: pools fill to their limits during the warm-up, a leak climbs
without one), no worker was replaced, and no request failed.

It prints the curve (a row per slice) and the verdict, and writes both, with a PNG plot
of the same series, to ``.stack/soak/``.

    python -m bench.soak [--requests N] [--slice S] [--warmup N] [--connections C]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from bench import pipeline
from bench.servers import ready
from bench.workload import SEED
from bench.wrk import wrk
from devstack.servers import postgres_bin_dir
from devstack.stack import (
    API_URL,
    APP_DB,
    BROKER_REDIS_PORT,
    BROKER_URL,
    CACHE_REDIS_PORT,
    CACHE_REDIS_URL,
    PGBOUNCER_PORT,
    POSTGRES_PORT,
    STACK_DIR,
    postgres_dsn,
    read_dev_api_key,
    supervisor,
)

RSS_GROWTH = 0.05
# The baseline is taken once every api worker's bounded stores are full and have turned
# over: each worker keeps up to ``cache.l1_max_entries`` (4,096) stale-if-error copies
# of the answers it served (``TieredCache._last_known``), and this mix asks for ~22,000
# distinct cacheable keys at the demo size, so a worker's store is full after ~20,000 of
# its own requests (~40,000 of the soak's, split over two workers) and its share of large
# entries (list pages) against small ones (users) settles as it turns over a few times
# more. Measured in-process (tests/bench/soak_memory_probe.py, docs/scale-and-soak.md):
# full after ~20,000 of a process's requests, ~4 MiB of bodies from ~30,000 on, so
# ~60,000 of the soak's. A baseline inside the fill counts the fill as growth.
WARMUP_REQUESTS = 100_000
REPORT_DIR = STACK_DIR / "soak"
# A moment after a slice for the answers in flight to finish and their sockets to close.
SETTLE_S = 1.0


@dataclass(frozen=True)
class Sample:
    """The state after one slice; ``requests`` counts every slice up to this one."""

    seconds: float
    requests: int
    rps: float
    p99_ms: float
    errors: int
    rss_kib: dict[int, int]
    fds: dict[int, int]
    connections: dict[str, int]
    # Per api worker, its descriptors by what they point at (``fd_kinds``): the fds
    # check is on the total, this says which kind moved.
    fd_kinds: dict[int, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def _growth(series: Sequence[int]) -> tuple[int, int]:
    """Highest of the first third and of the last third of ``series``."""
    third = max(1, len(series) // 3)
    return max(series[:third]), max(series[-third:])


def verdict(samples: Sequence[Sample], warmup_requests: int) -> list[Check]:
    """The soak's checks on its samples; the warm-up ends at the first sample with at
    least ``warmup_requests`` requests, which is the baseline of everything after it."""
    after = [s for s in samples if s.requests >= warmup_requests]
    if len(after) < 3:
        return [Check("enough slices after the warm-up", False, f"{len(after)} (need 3)")]
    base, last = after[0], after[-1]
    checks: list[Check] = []
    workers = set(base.rss_kib)
    replaced = [s for s in after if set(s.rss_kib) != workers]
    checks.append(
        Check(
            "the same api workers throughout",
            not replaced,
            f"pids {sorted(workers)}"
            + (f"; changed to {sorted(replaced[0].rss_kib)}" if replaced else ""),
        )
    )
    for pid in sorted(workers & set(last.rss_kib)):
        growth = last.rss_kib[pid] / base.rss_kib[pid] - 1
        checks.append(
            Check(
                f"api worker {pid} RSS after the warm-up",
                growth < RSS_GROWTH,
                f"{base.rss_kib[pid] / 1024:.1f} -> {last.rss_kib[pid] / 1024:.1f} MiB "
                f"({growth:+.1%}, < {RSS_GROWTH:+.0%})",
            )
        )
    counts: dict[str, list[int]] = {}
    for sample in after:
        for pid in sorted(workers):
            counts.setdefault(f"api worker {pid} open fds", []).append(sample.fds.get(pid, 0))
        for name, value in sample.connections.items():
            counts.setdefault(f"{name} connections", []).append(value)
    for name, series in counts.items():
        first, final = _growth(series)
        checks.append(
            Check(
                f"{name} do not grow",
                final <= first,
                f"highest {first} in the first third, {final} in the last",
            )
        )
    errors = sum(s.errors for s in samples)
    checks.append(Check("no request failed", errors == 0, f"{errors} errors"))
    return checks


def table(samples: Sequence[Sample]) -> list[str]:
    """Markdown: a row per slice."""
    if not samples:
        return []
    pids = sorted(samples[0].rss_kib)
    names = list(samples[0].connections)
    head = ["s", "requests", "req/s", "p99 ms", "errors"]
    head += [f"RSS MiB {pid}" for pid in pids] + [f"fds {pid}" for pid in pids] + names
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for s in samples:
        cells = [f"{s.seconds:.0f}", str(s.requests), f"{s.rps:.0f}", f"{s.p99_ms:.1f}"]
        cells.append(str(s.errors))
        cells += [f"{s.rss_kib[pid] / 1024:.1f}" if pid in s.rss_kib else "-" for pid in pids]
        cells += [_fds_cell(s, pid) for pid in pids]
        cells += [str(s.connections.get(name, "-")) for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fds_cell(sample: Sample, pid: int) -> str:
    """The total, then its Redis cache, PgBouncer and other sockets (``r``, ``b``, ``s``)
    and the rest (files, pipes, eventfds: ``f``)."""
    if pid not in sample.fds:
        return "-"
    kinds = sample.fd_kinds.get(pid)
    if not kinds:
        return str(sample.fds[pid])
    short = (("Redis cache", "r"), ("PgBouncer", "b"), ("other socket", "s"), ("not a socket", "f"))
    parts = [f"{kinds[name]}{letter}" for name, letter in short if kinds.get(name)]
    return f"{sample.fds[pid]} ({' '.join(parts)})"


def plot(samples: Sequence[Sample], warmup_requests: int, path: Path) -> None:
    """The same series as the table, one panel per kind, against the requests sent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s.requests / 1000 for s in samples]
    figure, panels = plt.subplots(4, 1, figsize=(9, 12), sharex=True)
    rss, fds, connections, rate = panels
    for pid in sorted(samples[0].rss_kib):
        rss.plot(x, [s.rss_kib.get(pid, math.nan) / 1024 for s in samples], label=f"pid {pid}")
        fds.plot(x, [s.fds.get(pid, math.nan) for s in samples], label=f"pid {pid}")
    for name in samples[0].connections:
        connections.plot(x, [s.connections.get(name, math.nan) for s in samples], label=name)
    rate.plot(x, [s.rps for s in samples], label="req/s")
    rate.plot(x, [s.errors for s in samples], label="errors")
    titles = ("api worker RSS (MiB)", "api worker open fds", "connections", "per slice")
    for panel, title in zip(panels, titles, strict=True):
        panel.set_title(title)
        panel.axvline(warmup_requests / 1000, color="grey", linestyle=":")
        panel.legend(loc="lower right", fontsize="small")
        panel.grid(alpha=0.3)
    rate.set_xlabel("requests sent (thousands); dotted: end of the warm-up")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


# What a sample reads from the stack.


def api_workers() -> list[int]:
    """The pids of the stack api's gunicorn workers (its master's children)."""
    master = supervisor.process_pid("api")
    children: list[int] = []
    for task in Path(f"/proc/{master}/task").iterdir():
        children += map(int, (task / "children").read_text().split())
    return sorted(children)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# What a socket of an api worker is connected to, by the stack's port at the other end.
PEERS = {
    CACHE_REDIS_PORT: "Redis cache",
    BROKER_REDIS_PORT: "Redis broker",
    PGBOUNCER_PORT: "PgBouncer",
    POSTGRES_PORT: "Postgres",
}


def _socket_peers(pid: int) -> dict[str, str]:
    """Socket inode -> what it connects to, for the TCP sockets in ``pid``'s namespace."""
    peers: dict[str, str] = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            peers[fields[9]] = PEERS.get(remote_port, "other socket")
    return peers


def fd_kinds(pid: int) -> dict[str, int]:
    """``pid``'s open descriptors by what they point at: the stack's servers by port,
    other sockets (the listener, unix sockets), and ``not a socket``."""
    peers = _socket_peers(pid)
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            kind = peers.get(target[len("socket:[") : -1], "other socket")
        else:
            kind = "not a socket"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _pgbouncer_pools() -> dict[str, int]:
    """Clients and server connections of the app database's pool (the admin console
    speaks only the simple query protocol, hence psql)."""
    admin = postgres_dsn(PGBOUNCER_PORT).rsplit("/", 1)[0] + "/pgbouncer"
    psql = [str(postgres_bin_dir() / "psql"), "-X", "-A", "-F", "\t", "-P", "footer=off"]
    out = subprocess.run(
        [*psql, admin, "-c", "SHOW POOLS"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, *rows = out.splitlines()
    names = header.split("\t")
    clients = servers = 0
    for row in (dict(zip(names, line.split("\t"), strict=True)) for line in rows):
        if row["database"] == APP_DB:
            clients += sum(int(v) for k, v in row.items() if k.startswith("cl_"))
            servers += sum(int(v) for k, v in row.items() if k.startswith("sv_"))
    return {"PgBouncer clients": clients, "PgBouncer servers": servers}


def connections() -> dict[str, int]:
    with psycopg.connect(postgres_dsn(POSTGRES_PORT), autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    counts = {"Postgres": int(row[0]), **_pgbouncer_pools()}
    for name, url in (("Redis cache", CACHE_REDIS_URL), ("Redis broker", BROKER_URL)):
        client = redis.Redis.from_url(url)
        try:
            # Minus this client's own connection.
            counts[name] = int(client.info("clients")["connected_clients"]) - 1
        finally:
            client.close()
    return counts


@dataclass
class Run:
    requests: int
    slice_s: int
    warmup_requests: int
    connections: int
    threads: int
    # Stop starting slices after this long, whatever the count (None: no limit).
    max_s: float | None = None
    samples: list[Sample] = field(default_factory=list)


def soak(run: Run) -> None:
    shop = pipeline.shop()
    tag = f"soak{int(time.time())}"
    authorization = f"Authorization: Bearer {read_dev_api_key()}"
    started = time.monotonic()
    sent = 0
    number = 0
    print(
        f"wrk -t{run.threads} -c{run.connections} -s mixed.lua, {run.slice_s} s slices, "
        f"until {run.requests} requests (warm-up: the first {run.warmup_requests})",
        flush=True,
    )
    while sent < run.requests:
        if run.max_s is not None and time.monotonic() - started > run.max_s:
            print(f"stopped after {run.max_s:.0f} s (--max-minutes), at {sent} requests")
            break
        number += 1
        report = wrk(
            API_URL,
            seconds=run.slice_s,
            connections=run.connections,
            threads=run.threads,
            script="mixed.lua",
            script_args=(shop.users, shop.products, SEED + number, f"{tag}-{number}"),
            headers=(authorization,),
        )
        sent += report.requests
        time.sleep(SETTLE_S)
        workers = api_workers()
        sample = Sample(
            seconds=time.monotonic() - started,
            requests=sent,
            rps=report.rps,
            p99_ms=report.p99_ms,
            errors=report.errors,
            rss_kib={pid: rss_kib(pid) for pid in workers},
            fds={pid: open_fds(pid) for pid in workers},
            fd_kinds={pid: fd_kinds(pid) for pid in workers},
            connections=connections(),
        )
        run.samples.append(sample)
        print(table(run.samples)[-1], flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--requests", type=int, default=1_000_000, help="default a million")
    parser.add_argument(
        "--slice", type=int, help="seconds per slice (default 10, or 3 under 500,000 requests)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=WARMUP_REQUESTS,
        metavar="N",
        help=f"requests before the baseline (default {WARMUP_REQUESTS:,}: see WARMUP_REQUESTS)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="stop starting slices after this long (the verdict covers what ran)",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.slice is None:
        args.slice = 10 if args.requests >= 500_000 else 3
    if not 0 <= args.warmup < args.requests:
        parser.error("--warmup is a count of requests, from 0 to below --requests")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not ready(API_URL + "/readyz"):
        print(f"the local stack's api does not answer on {API_URL}: run `make up`", file=sys.stderr)
        return 1
    max_s = args.max_minutes * 60 if args.max_minutes else None
    run = Run(args.requests, args.slice, args.warmup, args.connections, args.threads, max_s)
    soak(run)
    checks = verdict(run.samples, run.warmup_requests)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    png = REPORT_DIR / f"soak-{stamp}.png"
    plot(run.samples, run.warmup_requests, png)
    lines = [
        f"# Soak: {run.samples[-1].requests} requests in {run.samples[-1].seconds:.0f} s",
        "",
        *table(run.samples),
        "",
        "```",
        *(check.line() for check in checks),
        "```",
        "",
        f"![the curve]({png.name})",
    ]
    report = REPORT_DIR / f"soak-{stamp}.md"
    report.write_text("\n".join(lines) + "\n")
    print()
    print("\n".join(check.line() for check in checks))
    print(f"\nreport: {report}\nplot:   {png}")
    return 0 if all(check.passed for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
