"""Fill the database with deterministic demo data: users, products and order history.

A load test against an empty shop measures nothing useful: listing pages are empty,
indexes are tiny and every cache is cold. This seeder gives the local stack a realistic
volume (by default 10,000 users, 1,000 products in categories ``cat0``..``cat19`` and
50,000 orders with 1-5 items each, spread over the last 90 days) in a few seconds.
``--scale K`` multiplies all three (``--scale 100``: a million users, 100,000 products,
five million orders and about fifteen million order items, in about three minutes on a
2-core machine); rows are made and copied a batch at a time, so memory stays flat at any
scale, with a progress bar per step.

Speed comes from three things, all in one transaction (a failed seed leaves nothing
behind), straight to Postgres (``migration_database_url``, never through PgBouncer):

* asyncpg's binary ``COPY`` with explicit ids;
* the tables' keys, unique constraints, indexes and foreign keys dropped after the
  ``TRUNCATE`` and rebuilt from their own definitions (``pg_get_indexdef``,
  ``pg_get_constraintdef``) once the rows are in: one sort per index and one join per
  foreign key instead of a B-tree insert per row and index and a trigger per row and
  foreign key, and the same schema and constraints the migrations define afterwards;
* the rows made in a child process, batches ahead of the ``COPY`` (each batch has its
  own random generator, seeded from ``--seed`` and the batch's number, so the rows do not
  depend on who made them or in which order).

Since the ids are explicit, each table's sequence is then moved past ``max(id)`` so the
app's own inserts do not collide. After the commit ``VACUUM (ANALYZE)`` gives the
planner the new tables' statistics and the pages their visibility bits, so the first
reads do not pay for that, nor does autovacuum run in the middle of a benchmark. The same
``--seed`` gives the same rows; only the time anchor (the current minute) moves.

Every run truncates the shop's tables first (a re-seed); with ``--if-empty`` a database
whose ``users`` table has rows is left alone instead, so start-up scripts can call it.

    python -m devstack.seed [--if-empty] [--scale K] [--users N --products N --orders N]
                            [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from tqdm import tqdm

from services.core.settings import Settings

BATCH = 10_000
# Batches made ahead of the COPY, so the maker never waits for Postgres nor it for him.
AHEAD = 4
CATEGORIES = 20
STOCK = 1_000_000
HISTORY = timedelta(days=90)
TABLES = (
    "users",
    "products",
    "orders",
    "order_items",
    "idempotency_keys",
    "outbox",
    "email_deliveries",
)
# The tables the seeder fills: their keys, indexes and foreign keys (and the foreign
# keys that point at them) are rebuilt after the load.
FILLED = ("users", "products", "orders", "order_items")
FIRST = "Ada Alan Amara Ben Carla Chen Dana Elif Emil Farah Grace Hugo Ines Ivan Jonas Kai "
FIRST += "Lena Liam Maya Mateo Nadia Noah Olga Omar Priya Rosa Sam Sofia Tariq Yuki Zoe"
LAST = "Adler Baker Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lopez "
LAST += "Meyer Nakamura Novak Okafor Patel Quinn Rossi Schmidt Silva Tanaka Weber Young"
ADJECTIVES = "Classic Compact Deluxe Eco Handmade Light Modern Pocket Pro Rugged Smart Vintage"
NOUNS = "Backpack Blender Bottle Chair Desk Headphones Kettle Lamp Mug Notebook Pan Watch"
COLUMNS = {
    "users": ("id", "email", "name", "created_at"),
    "products": ("id", "name", "category", "price_cents", "stock", "created_at", "updated_at"),
    "orders": ("id", "user_id", "status", "confirmation_status", "total_cents", "created_at"),
    "order_items": ("id", "order_id", "product_id", "quantity", "unit_price_cents"),
}
MAX_ITEMS = 5

Row = tuple[Any, ...]
T = TypeVar("T")

DEFAULTS = {"users": 10_000, "products": 1_000, "orders": 50_000}


@dataclass(frozen=True)
class Plan:
    """What to make: sizes, the seed and the time anchor. Every batch is a pure function
    of the plan and its number."""

    seed: int
    users: int
    products: int
    orders: int
    now: datetime

    def rng(self, table: str, batch: int) -> random.Random:
        # A string seed is hashed with SHA-512: the same generator in every process.
        return random.Random(f"{self.seed}/{table}/{batch}")

    def batches(self, rows: int) -> int:
        return -(-rows // BATCH)


def user_batch(plan: Plan, batch: int) -> list[Row]:
    """Users signed up in the 9 months before the order history starts."""
    draw = plan.rng("users", batch).random
    first, last = FIRST.split(), LAST.split()
    signed_up = plan.now - HISTORY
    rows: list[Row] = []
    for i in range(batch * BATCH + 1, min((batch + 1) * BATCH, plan.users) + 1):
        created = signed_up - timedelta(seconds=int(draw() * 275 * 86_400))
        name = f"{first[int(draw() * len(first))]} {last[int(draw() * len(last))]}"
        rows.append((i, f"user{i}@example.com", name, created))
    return rows


def product_rows(plan: Plan) -> list[Row]:
    """The whole catalogue (the orders need every price)."""
    draw = plan.rng("products", 0).random
    adjectives, nouns = ADJECTIVES.split(), NOUNS.split()
    rows: list[Row] = []
    for i in range(1, plan.products + 1):
        created = plan.now - HISTORY - timedelta(seconds=int(draw() * 90 * 86_400))
        name = f"{adjectives[int(draw() * len(adjectives))]} {nouns[int(draw() * len(nouns))]} {i}"
        price = 100 + int(draw() * 49_901)
        rows.append((i, name, f"cat{(i - 1) % CATEGORIES}", price, STOCK, created, created))
    return rows


@dataclass(frozen=True)
class OrderBatch:
    orders: list[Row]
    items: list[Row]


def order_batch(plan: Plan, prices: Sequence[int], batch: int) -> OrderBatch:
    """Orders ``batch * BATCH + 1``.. and their items. Ids follow created_at, like a real
    history: batch ``b`` falls in the ``b``-th slice of the 90 days. Item ids are
    ``order id * MAX_ITEMS + line``: unique and in order without counting the items of
    earlier batches (there are gaps, which ids may have)."""
    draw = plan.rng("orders", batch).random
    start, size = batch * BATCH, min(BATCH, plan.orders - batch * BATCH)
    history_s = HISTORY.total_seconds()
    low, width = history_s * start / plan.orders, history_s * size / plan.orders
    offsets = sorted(low + draw() * width for _ in range(size))
    began = plan.now - HISTORY
    product_count, lines = len(prices), min(MAX_ITEMS, len(prices))
    orders: list[Row] = []
    items: list[Row] = []
    for order_id, offset in enumerate(offsets, start=start + 1):
        wanted = 1 + int(draw() * lines)
        chosen: list[int] = []
        while len(chosen) < wanted:
            product_id = 1 + int(draw() * product_count)
            if product_id not in chosen:
                chosen.append(product_id)
        total = 0
        for line, product_id in enumerate(chosen):
            quantity, price = 1 + int(draw() * 5), prices[product_id - 1]
            total += quantity * price
            items.append((order_id * MAX_ITEMS + line, order_id, product_id, quantity, price))
        user_id = 1 + int(draw() * plan.users)
        created = began + timedelta(seconds=offset)
        orders.append((order_id, user_id, "placed", "sent", total, created))
    return OrderBatch(orders, items)


# The child process's copy of the catalogue's prices (set once, not sent per batch).
_prices: list[int] = []


def _remember_prices(prices: list[int]) -> None:
    global _prices
    _prices = prices


def _order_batch_in_child(plan: Plan, batch: int) -> OrderBatch:
    return order_batch(plan, _prices, batch)


async def _ahead(
    pool: ProcessPoolExecutor, make: Callable[[Plan, int], T], plan: Plan, count: int
) -> AsyncIterator[T]:
    """``make(plan, 0..count-1)`` in the pool, ``AHEAD`` batches ahead, in order."""
    loop = asyncio.get_running_loop()
    pending: deque[asyncio.Future[T]] = deque()
    for batch in range(count):
        pending.append(loop.run_in_executor(pool, make, plan, batch))
        if len(pending) > AHEAD:
            yield await pending.popleft()
    while pending:
        yield await pending.popleft()


@dataclass(frozen=True)
class Rebuild:
    """The DDL that puts back what ``drop_keys_and_indexes`` dropped, in order: keys and
    indexes first, then the foreign keys that need them."""

    statements: list[str]


async def drop_keys_and_indexes(conn: Any, tables: Sequence[str]) -> Rebuild:
    """Drop the primary keys, unique constraints, indexes and foreign keys of ``tables``
    and the foreign keys pointing at them; return the statements that restore them
    exactly as defined (names, columns, partial predicates, ON DELETE actions)."""
    foreign = await conn.fetch(
        "SELECT c.conrelid::regclass::text AS tab, c.conname, pg_get_constraintdef(c.oid) AS def"
        " FROM pg_constraint c WHERE c.contype = 'f'"
        " AND (c.conrelid = ANY($1::regclass[]) OR c.confrelid = ANY($1::regclass[]))"
        " ORDER BY c.conrelid::regclass::text, c.conname",
        list(tables),
    )
    keys = await conn.fetch(
        "SELECT c.conrelid::regclass::text AS tab, c.conname, pg_get_constraintdef(c.oid) AS def"
        " FROM pg_constraint c WHERE c.contype IN ('p', 'u')"
        " AND c.conrelid = ANY($1::regclass[])"
        " ORDER BY c.conrelid::regclass::text, c.conname",
        list(tables),
    )
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def"
        " FROM pg_index i WHERE i.indrelid = ANY($1::regclass[])"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
        "  WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))"
        " ORDER BY 1",
        list(tables),
    )
    for row in (*foreign, *keys):
        await conn.execute(f'ALTER TABLE {row["tab"]} DROP CONSTRAINT "{row["conname"]}"')
    for row in indexes:
        await conn.execute(f"DROP INDEX {row['name']}")
    restore = [f'ALTER TABLE {r["tab"]} ADD CONSTRAINT "{r["conname"]}" {r["def"]}' for r in keys]
    restore += [row["def"] for row in indexes]
    restore += [
        f'ALTER TABLE {r["tab"]} ADD CONSTRAINT "{r["conname"]}" {r["def"]}' for r in foreign
    ]
    return Rebuild(restore)


async def _copy_batch(conn: Any, table: str, rows: Sequence[Row]) -> None:
    await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])


def _bar(total: int, desc: str, unit: str) -> tqdm[Any]:
    return tqdm(total=total, desc=f"{desc:<12}", unit=unit, file=sys.stderr)


async def _move_sequence_past(conn: Any, table: str) -> None:
    # setval(..., max(id)): right for an empty table too (the next id is then 1).
    next_id = "coalesce(max(id), 0) + 1"
    sql = f"SELECT setval(pg_get_serial_sequence($1, 'id'), {next_id}, false) FROM {table}"  # noqa: S608
    await conn.execute(sql, table)


@dataclass
class Counts:
    users: int = 0
    products: int = 0
    orders: int = 0
    items: int = 0


async def _fill(conn: Any, plan: Plan, pool: ProcessPoolExecutor) -> Counts:
    counts = Counts()
    with _bar(plan.users, "users", " rows") as bar:
        async for rows in _ahead(pool, user_batch, plan, plan.batches(plan.users)):
            await _copy_batch(conn, "users", rows)
            counts.users += len(rows)
            bar.update(len(rows))
    catalogue = product_rows(plan)
    with _bar(plan.products, "products", " rows") as bar:
        for start in range(0, len(catalogue), BATCH):
            await _copy_batch(conn, "products", catalogue[start : start + BATCH])
            bar.update(min(BATCH, len(catalogue) - start))
    counts.products = len(catalogue)
    pool.submit(_remember_prices, [row[3] for row in catalogue]).result()
    with _bar(plan.orders, "orders+items", " orders") as bar:
        made = _ahead(pool, _order_batch_in_child, plan, plan.batches(plan.orders))
        async for batch in made:
            await _copy_batch(conn, "orders", batch.orders)
            await _copy_batch(conn, "order_items", batch.items)
            counts.orders += len(batch.orders)
            counts.items += len(batch.items)
            bar.update(len(batch.orders))
    return counts


async def seed(dsn: str, args: argparse.Namespace) -> str:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    plan = Plan(args.seed, args.users, args.products, args.orders, now)
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    # One child makes the rows (with spawn: a clean interpreter, nothing of this loop).
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        async with conn.transaction():
            if args.if_empty:
                # Self-conflicting lock: of two concurrent --if-empty seeds only one fills.
                await conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
                    return "seed: users already has rows, nothing to do (--if-empty)"
            # Index builds sort in memory up to this, per index (the server's default
            # is 64 MB); only for this transaction.
            await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
            rebuild = await drop_keys_and_indexes(conn, FILLED)
            counts = await _fill(conn, plan, pool)
            with _bar(len(rebuild.statements), "keys+indexes", " steps") as bar:
                for statement in rebuild.statements:
                    await conn.execute(statement)
                    bar.update()
            for table in FILLED:
                await _move_sequence_past(conn, table)
        loaded = time.perf_counter()
        print("vacuum (analyze) ...", file=sys.stderr, flush=True)
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(FILLED)}")
    finally:
        pool.shutdown(cancel_futures=True)
        await conn.close()
    done = time.perf_counter()
    return (
        f"seed: {counts.users} users, {counts.products} products, {counts.orders} orders, "
        f"{counts.items} order items in {done - started:.1f} s "
        f"(loaded and indexed in {loaded - started:.1f} s, vacuum and analyze "
        f"{done - loaded:.1f} s)"
    )


def _count(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.seed", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--if-empty", action="store_true", help="skip if users has rows")
    parser.add_argument(
        "--scale", type=_count, default=1, metavar="K", help="K x the default volume"
    )
    for table, default in DEFAULTS.items():
        parser.add_argument(f"--{table}", type=_count, metavar="N", help=f"default {default} x K")
    parser.add_argument("--seed", type=int, default=42, metavar="S", help="default 42")
    args = parser.parse_args(argv)
    for table, default in DEFAULTS.items():
        if getattr(args, table) is None:
            setattr(args, table, default * args.scale)
    if args.orders and not (args.users and args.products):
        parser.error("--orders needs at least one user and one product")
    url = make_url(Settings().migration_database_url).set(drivername="postgresql")
    print(asyncio.run(seed(url.render_as_string(hide_password=False), args)))


if __name__ == "__main__":
    main()
