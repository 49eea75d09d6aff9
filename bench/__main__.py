"""``make bench``: every scenario beside its floors, as ratios, and a PASS/MISS per target,
in one run against the local stack (``bench/scenarios.py`` says what runs).

The machine is shared and noisy: compare the ratios within one run, not the absolute
numbers between runs.

``--isolate`` pins each server (one worker) to the last CPU and wrk (one thread) to the
others, so the load generator never takes the server's core: on a 2-core machine the
default run shares both cores, which adds wrk's constant cost to every scenario and
pulls all ratios towards 1. Postgres, PgBouncer and the pipeline stay unpinned.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time

from bench import pipeline, scenarios
from bench.pipeline import Drain
from bench.report import table
from bench.scenarios import (
    BARE,
    CACHED,
    DIRECT,
    HELLO,
    ORDERS_READ,
    POINT_READ,
    SAME_BYTES,
    Load,
    Outcome,
    WriteLoad,
    raw,
)
from bench.servers import ready
from bench.targets import Target, ratio
from devstack.stack import API_URL

GROUPS = ("cached", "reads", "writes")


def targets(outcome: Outcome, args: argparse.Namespace) -> list[Target]:
    cached = outcome.row(CACHED)
    sustained = next((r for r in outcome.rows if r.name.startswith(scenarios.ORDER_WRITE)), None)
    drain = outcome.drain
    return [
        Target(
            "cached ≥ 0.8x the same-bytes ceiling (default run)",
            ratio(outcome.rps(CACHED), outcome.rps(SAME_BYTES)),
            0.8,
        ),
        Target(
            "cached ≥ 2x FastAPI hello (holds in the --isolate run)",
            ratio(outcome.rps(CACHED), outcome.rps(HELLO)),
            2.0,
        ),
        Target("cached ≥ 0.5x bare ASGI", ratio(outcome.rps(CACHED), outcome.rps(BARE)), 0.5),
        # Issue #14: the limiter must not eat the cache's gains.
        Target(
            "cached with the rate limiter ≥ 0.85x without it",
            ratio(outcome.rps(CACHED), outcome.rps(scenarios.CACHED_NO_LIMITER)),
            0.85,
        ),
        Target(
            f"cached p99 at {args.connections} connections",
            cached.p99_ms if cached else None,
            20,
            below=True,
            unit="ms",
        ),
        Target(
            "uncached point read ≥ 0.5x its raw floor straight to Postgres",
            ratio(outcome.rps(POINT_READ), outcome.rps(raw("point read", DIRECT))),
            0.5,
        ),
        Target(
            "user's orders read ≥ 0.4x its raw floor straight to Postgres",
            ratio(outcome.rps(ORDERS_READ), outcome.rps(raw("orders read", DIRECT))),
            0.4,
        ),
        Target(
            f"POST /orders accepted, sustained {args.sustain} s",
            sustained.rps if sustained else None,
            500,
            unit="orders/s",
        ),
        Target(
            "every confirmation sent after the load stops, within",
            (drain.seconds if drain.drained else math.nan) if drain else None,
            60,
            below=True,
            unit="s",
            detail=_drain_detail(drain),
        ),
        Target(
            f"POST /orders p99 at {args.rate:.0f} orders/s offered",
            outcome.offered.p99_ms if outcome.offered else None,
            50,
            below=True,
            unit="ms",
        ),
    ]


def _drain_detail(drain: Drain | None) -> str:
    if drain is None:
        return ""
    if drain.drained:
        return f"{drain.peak} confirmations at {drain.rate:.0f}/s"
    left = f"{drain.left} of {drain.peak} still pending after {drain.seconds:.0f} s"
    return f"{left}, at {drain.rate:.0f}/s"


def _groups(value: str) -> list[str]:
    chosen = [group.strip() for group in value.split(",")]
    unknown = set(chosen) - set(GROUPS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown group(s) {sorted(unknown)}; from {GROUPS}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--only",
        type=_groups,
        default=list(GROUPS),
        metavar="GROUPS",
        help=f"comma-separated, from {','.join(GROUPS)} (default: all)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per read row")
    parser.add_argument("--warmup", type=int, default=3, help="seconds before each row")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sustain", type=int, default=60, help="seconds of sustained orders")
    parser.add_argument("--rate", type=float, default=200, help="orders/s offered (open loop)")
    parser.add_argument("--offered-seconds", type=int, default=15)
    parser.add_argument(
        "--drain-wait", type=float, default=90, help="longest wait for the confirmations"
    )
    parser.add_argument(
        "--isolate", action="store_true", help="servers (1 worker) and wrk on separate CPUs"
    )
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    wrk_cpus = server_cpus = None
    env: dict[str, str] = {}
    if args.isolate:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            print("--isolate needs two CPUs and taskset (util-linux)", file=sys.stderr)
            return 1
        server_cpus, wrk_cpus = str(cpus[-1]), ",".join(map(str, cpus[:-1]))
        # The open-loop generator runs in this process: off the server's CPU too.
        os.sched_setaffinity(0, cpus[:-1])
        args.threads = len(cpus) - 1
        env = {"STAMPEDE_SERVER__WORKERS": "1"}
    if shutil.which("wrk") is None:
        print("wrk is missing: `make bench` installs it", file=sys.stderr)
        return 1
    if not ready(API_URL + "/readyz"):
        print(f"the local stack's api does not answer on {API_URL}: run `make up`", file=sys.stderr)
        return 1

    load = Load(
        args.duration, args.warmup, args.connections, args.threads, wrk_cpus, server_cpus, env
    )
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, one at a time")
    if args.isolate:
        print(f"servers: 1 worker on CPU {server_cpus}; wrk on CPU {wrk_cpus}")
    started = time.monotonic()
    outcome = Outcome()
    shop = pipeline.shop()
    # Confirmations an earlier run left would be sent during this one, on the same cores.
    leftover = pipeline.pending_confirmations(after_order_id=0)
    if leftover:
        print(f"waiting for {leftover} confirmations left by an earlier run", flush=True)
        pipeline.wait_for_drain(0, args.drain_wait * 2)
    if "cached" in args.only:
        scenarios.cached(load, outcome)
    if "reads" in args.only:
        scenarios.reads(load, shop, outcome)
    if "writes" in args.only:
        plan = WriteLoad(args.sustain, args.rate, args.offered_seconds, args.drain_wait)
        scenarios.writes(load, shop, plan, outcome)

    print()
    print("\n".join(table(outcome.rows)))
    if outcome.drain:
        drain = outcome.drain
        print(
            f"\nAfter the sustained orders: {drain.peak} confirmations pending, "
            + (
                f"all sent {drain.seconds:.1f} s later"
                if drain.drained
                else f"{drain.left} still pending after {drain.seconds:.0f} s"
            )
            + f" (drain rate {drain.rate:.0f}/s)"
        )
    print()
    for target in targets(outcome, args):
        print(target.line())
    print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
