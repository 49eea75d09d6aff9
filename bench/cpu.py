"""Where an order's CPU goes: the local stack's processes, by role, over a window.

    python -m bench.cpu sample FILE        # a snapshot of every process a second, until stopped
    python -m bench.cpu report FILE --orders N [--drain-s S]

``sample`` appends one JSON line a second: each process's CPU time (user + system, from
``/proc/PID/stat``), its parent and its command line. ``report`` counts the processes of
this checkout's stack (a command line naming the checkout, their descendants — Postgres's
backends are its postmaster's children — the stack's Redis ports, wrk) from the start of
the sustained run (the ``wrk … -d60s`` process) to its end plus ``--drain-s`` (the
bench's drain time), by role, in CPU seconds and per order. Run ``sample`` beside
``make bench BENCH_ARGS="--only writes"``; the bench prints the orders (rate x 60 s) and
the drain time.

CPU time per order is steadier than a rate on a shared machine, but not immune: a
process waiting for a core costs no CPU, a cache-cold one costs more.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
STACK_REDIS = ("127.0.0.1:26379", "127.0.0.1:26380")
SUSTAINED_WRK = "-d60s"

Snapshot = dict[str, Any]


def role(command: str) -> str:
    program = command.split(" ", 1)[0]
    if program.endswith("wrk"):
        return "wrk"
    for needle, name in (
        ("celery", "worker (celery)"),
        ("services.worker.relay", "relay"),
        ("devstack.mailsink", "mail sink"),
        ("gunicorn", "api (gunicorn)"),
        ("pgbouncer", "pgbouncer"),
        ("redis-server", "redis"),
        ("-m bench", "bench"),
        ("prometheus", "prometheus"),
        ("supervisord", "supervisord"),
    ):
        if needle in command:
            return f"redis {command.rsplit(':', 1)[-1].split()[0]}" if name == "redis" else name
    if command.startswith("postgres") or program.endswith("/postgres"):
        return "postgres"
    return "other"


def snapshot() -> Snapshot:
    processes: dict[str, list[Any]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        # The start time tells a pid reused meanwhile from the same process.
        processes[pid] = [ticks, int(fields[1]), command[:200], int(fields[19])]
    return {"t": time.time(), "p": processes}


def sample(path: Path) -> None:
    with path.open("a") as out:
        while True:
            out.write(json.dumps(snapshot()) + "\n")
            out.flush()
            time.sleep(1)


def _ours(pid: str, processes: dict[str, list[Any]], root: Path) -> bool:
    for _ in range(8):
        entry = processes.get(pid)
        if entry is None:
            return False
        _, parent, command, _ = entry
        if str(root) in command or role(command) == "wrk" or any(r in command for r in STACK_REDIS):
            return True
        pid = str(parent)
    return False


def report(path: Path, orders: int, drain_s: float, root: Path = REPO) -> list[str]:
    snaps = [json.loads(line) for line in path.read_text().splitlines()]
    loaded = [
        s["t"]
        for s in snaps
        if any(role(c) == "wrk" and SUSTAINED_WRK in c for _, _, c, _ in s["p"].values())
    ]
    if not loaded:
        raise SystemExit(f"no sustained wrk run ({SUSTAINED_WRK}) in {path}")
    start, end = loaded[0] - 1, loaded[-1] + drain_s
    first = min(snaps, key=lambda s: abs(s["t"] - start))
    last = min(snaps, key=lambda s: abs(s["t"] - end))
    seconds = last["t"] - first["t"]
    by_role: Counter[str] = Counter()
    for pid, (ticks, _, command, started) in last["p"].items():
        if not _ours(pid, last["p"], root):
            continue
        before = first["p"].get(pid)
        spent = ticks - (before[0] if before and before[3] == started else 0)
        by_role[role(command)] += spent / TICKS_PER_S
    lines = [
        f"{seconds:.0f} s (the sustained run and {drain_s:.0f} s of drain), {orders} orders",
        "| process | CPU s | cores | ms per order |",
        "|---|---:|---:|---:|",
    ]
    for name, cpu in [*by_role.most_common(), ("all", sum(by_role.values()))]:
        lines.append(f"| {name} | {cpu:.1f} | {cpu / seconds:.2f} | {cpu / orders * 1000:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sample").add_argument("file", type=Path)
    reporting = commands.add_parser("report")
    reporting.add_argument("file", type=Path)
    reporting.add_argument("--orders", type=int, required=True)
    reporting.add_argument("--drain-s", type=float, default=0.0)
    reporting.add_argument("--root", type=Path, default=REPO, help="the stack's checkout")
    args = parser.parse_args()
    if args.command == "sample":
        sample(args.file)
    else:
        print("\n".join(report(args.file, args.orders, args.drain_s, args.root)))


if __name__ == "__main__":
    main()
