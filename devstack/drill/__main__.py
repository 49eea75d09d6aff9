"""``python -m devstack.drill [--short] [--only NAME]``: run the fault drill against the
local stack (``make up`` first; ``make drill`` does both).

For each fault in turn: mixed keep-alive traffic starts, runs ``--before`` seconds, the
fault is injected and held, the dependency comes back, traffic goes on ``--after``
seconds. Then the order pipeline is left to drain and each fault's row is judged: the
table goes to stdout and to ``.stack/drill-report.md``; the exit code is 1 if any row
missed a target.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from devstack import stack
from devstack.drill import delivery, report, traffic
from devstack.drill.faults import Controls, Window
from devstack.drill.plan import SCENARIOS, Scenario
from devstack.servers import LOCALHOST

REPORT = stack.STACK_DIR / "drill-report.md"


async def _one(
    scenario: Scenario, hold_s: float, args: argparse.Namespace, controls: Controls, seed: int
) -> tuple[traffic.Traffic, Window, float]:
    record = traffic.Traffic(api_key=stack.read_dev_api_key())
    stop = asyncio.Event()
    began = time.monotonic()
    load = asyncio.create_task(
        traffic.run(
            LOCALHOST,
            stack.API_PORT,
            clients=args.clients,
            rate=args.rate,
            stop=stop,
            mix=traffic.Mix(),
            seed=seed,
            traffic=record,
            began=began,
        )
    )
    try:
        await asyncio.sleep(args.before)
        window = await scenario.fault(controls, hold_s)
        await asyncio.sleep(args.after)
    finally:
        stop.set()
        await load
    return record, window, began


async def drill(args: argparse.Namespace) -> int:
    controls = Controls()
    chosen: list[tuple[Scenario, float]] = []
    for scenario in SCENARIOS:
        hold_s = scenario.short_hold_s if args.short else scenario.hold_s
        if hold_s is not None and (not args.only or scenario.name in args.only):
            chosen.append((scenario, hold_s))
    wall_start = time.time()
    runs = []
    for index, (scenario, hold_s) in enumerate(chosen):
        print(f"[{index + 1}/{len(chosen)}] {scenario.title(hold_s)} ...", flush=True)
        runs.append((scenario, *await _one(scenario, hold_s, args, controls, seed=index * 100)))
    keys = [key for _, record, _, _ in runs for key in record.order_keys]
    print(f"waiting for {len(keys)} orders' confirmations ...", flush=True)
    stored, drain_s = await delivery.wait_for_confirmations(keys, within_s=args.drain_timeout)
    emails = delivery.emails_per_order(since=wall_start)
    rows = []
    for (scenario, record, window, began), (_, hold_s) in zip(runs, chosen, strict=True):
        mine = [stored.by_key[key] for key in record.order_keys if key in stored.by_key]
        acknowledged = tuple(o.order_id for o in record.outcomes if o.order_id is not None)
        rows.append(
            report.row(
                scenario.title(hold_s),
                record,
                window,
                began,
                scenario.allowance,
                report.Delivery(acknowledged, tuple(mine), emails),
            )
        )
    table = report.markdown(rows)
    summary = (
        f"{args.clients} keep-alive clients, {args.rate:.0f} req/s offered "
        f"(cached list / user read / order = 4:3:3), {args.before:.0f} s before each fault "
        f"and {args.after:.0f} s after it is back; confirmations drained {drain_s:.1f} s "
        f"after the last fault ({stored.pending} still pending)."
    )
    print(f"\n{summary}\n\n{table}")
    REPORT.write_text(f"{summary}\n\n{table}\n")
    print(f"\n(also in {REPORT})")
    return 0 if all(not r.misses for r in rows) and stored.pending == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.drill", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI drill: shorter faults")
    parser.add_argument(
        "--only", action="append", help="run only faults of this name, e.g. 'Postgres down'"
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s in all")
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=6.0)
    # A message lost with a killed worker comes back with the relay's republish sweep.
    parser.add_argument("--drain-timeout", type=float, default=480.0)
    args = parser.parse_args(argv)
    if not stack.supervisor.is_running():
        print("The local stack is not running: `make up` first (or `make drill`).")
        return 2
    return asyncio.run(drill(args))


if __name__ == "__main__":
    sys.exit(main())
