"""Where a soak's api memory goes: the soak's mix driven through one api in-process.

Not collected by the suite (the name has no ``test_`` prefix); run it on purpose:

    PROBE_REQUESTS=150000 uv run pytest tests/bench/soak_memory_probe.py -s -p no:cacheprovider

It seeds the demo-size shop into the tests' own servers (never the stack), then sends
the mix of ``bench/lua/mixed.lua`` from 32 concurrent clients and, every
``PROBE_EVERY`` requests, prints the process's RSS, ``sys.getallocatedblocks()`` (every
Python allocation, small or large), the bounded stores' sizes (L1, the stale-if-error
copies and the bytes of their bodies) and the descriptors by kind. With
``PROBE_TRACEMALLOC=N`` it starts ``tracemalloc`` after N requests and prints, at each
later step, the allocations that grew most since the first snapshot, by traceback.
(``tracemalloc`` slows the process ~10x, and it sees only what was allocated after it
started: what it shows as growth includes entries that replaced older, untraced ones.)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import asyncpg

from devstack.seed import seed
from tests.support.api import make_settings, running_api
from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint

USERS, PRODUCTS, ORDERS = 10_000, 1_000, 50_000
REQUESTS = int(os.environ.get("PROBE_REQUESTS", "150000"))
EVERY = int(os.environ.get("PROBE_EVERY", "5000"))
TRACE_AFTER = int(os.environ.get("PROBE_TRACEMALLOC", "0"))
CLIENTS = 32

Request = tuple[str, str, dict[str, Any] | None, dict[str, str]]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmRSS")


def fds_by_kind(ports: dict[int, str]) -> dict[str, int]:
    peers: dict[str, str] = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            peers[fields[9]] = ports.get(int(fields[2].rsplit(":", 1)[1], 16), "other socket")
    kinds: dict[str, int] = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        kind = peers.get(target[8:-1], "other socket") if target.startswith("socket:[") else "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def mixed(rng: random.Random, number: int, tag: str) -> Request:
    """One request of ``bench/lua/mixed.lua``'s mix."""
    draw = rng.randint(1, 100)
    if draw <= 55:
        return "GET", f"/products?category=cat{rng.randint(0, 19)}", None, {}
    if draw <= 73:
        return "GET", f"/products/{rng.randint(1, PRODUCTS)}", None, {}
    if draw <= 85:
        return "GET", f"/users/{rng.randint(1, USERS)}", None, {}
    if draw <= 87:
        return "GET", f"/users/{rng.randint(1, USERS)}/orders", None, {}
    if draw <= 97:
        return "GET", f"/products?cursor=k2_{rng.randint(1, PRODUCTS):x}", None, {}
    first = rng.randint(1, PRODUCTS)
    second = rng.randint(1, PRODUCTS - 1)
    second += second >= first
    items = [{"product_id": first, "quantity": 1}, {"product_id": second, "quantity": 1}]
    body = {"user_id": rng.randint(1, USERS), "items": items}
    return "POST", "/orders", body, {"Idempotency-Key": f"{tag}-{number}"}


async def test_soak_memory_probe(
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> None:
    shop = argparse.Namespace(
        users=USERS, products=PRODUCTS, orders=ORDERS, seed=42, if_empty=False
    )
    print(await seed(migrated_postgres.dsn, shop))
    connection = await asyncpg.connect(migrated_postgres.dsn)
    try:  # Stock for every order the probe places.
        await connection.execute("UPDATE products SET stock = 100000000")
    finally:
        await connection.close()
    settings = make_settings(migrated_postgres, pgbouncer_server, cache_redis_server)
    ports = {pgbouncer_server.port: "PgBouncer", cache_redis_server.port: "Redis cache"}
    async with running_api(settings) as api:
        cache = api.resources.response_cache
        assert cache is not None
        tiers = cache.tiers
        sent = 0
        errors: dict[int, int] = {}
        tag = f"probe{time.time_ns()}"

        async def client(number: int) -> None:
            nonlocal sent
            rng = random.Random(1000 + number)
            while sent < REQUESTS:
                sent += 1
                method, path, body, headers = mixed(rng, sent, tag)
                response = await api.client.request(method, path, json=body, headers=headers)
                if response.status_code >= 300:
                    errors[response.status_code] = errors.get(response.status_code, 0) + 1

        async def report() -> None:
            first: tracemalloc.Snapshot | None = None
            due = EVERY
            started = time.monotonic()
            while sent < REQUESTS:
                await asyncio.sleep(0.2)
                if sent < due:
                    continue
                due += EVERY
                gc.collect()
                l1 = [item[2] for item in tiers.l1._items.values()]
                kept = list(tiers._last_known.values())
                unique = {id(entry): entry for entry in l1 + kept}.values()
                stored = sum(len(e.body) + len(e.gzip_body or b"") for e in unique)
                print(
                    f"{sent} requests {time.monotonic() - started:.0f} s: "
                    f"RSS {rss_mib():.1f} MiB, {sys.getallocatedblocks()} blocks, "
                    f"L1 {len(l1)}, stale-if-error copies {len(kept)}, "
                    f"their bodies {stored / 2**20:.2f} MiB, "
                    f"fds {fds_by_kind(ports)}, errors {errors}",
                    flush=True,
                )
                if TRACE_AFTER and sent >= TRACE_AFTER:
                    if not tracemalloc.is_tracing():
                        tracemalloc.start(6)
                        continue
                    snapshot = tracemalloc.take_snapshot()
                    if first is None:
                        first = snapshot
                        continue
                    for stat in snapshot.compare_to(first, "traceback")[:12]:
                        print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
                        print("\n".join("      " + line for line in stat.traceback.format()))

        await asyncio.gather(report(), *(client(number) for number in range(CLIENTS)))
    assert not errors
