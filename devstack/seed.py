"""Fill the database with deterministic demo data: users, products and order history.

A load test against an empty shop measures nothing useful: listing pages are empty,
indexes are tiny and every cache is cold. This seeder gives the local stack a realistic
volume (by default 10,000 users, 1,000 products in categories ``cat0``..``cat19`` and
50,000 orders with 1-5 items each, spread over the last 90 days) in a few seconds.
``--scale K`` multiplies all three (``--scale 100``: a million users, 100,000 products,
five million orders); rows are made and copied a batch at a time, so memory stays flat
at any scale, with a progress bar per table.

Speed comes from asyncpg's binary ``COPY`` with explicit ids, straight to Postgres
(``migration_database_url``, never through PgBouncer), all in one transaction: a failed
seed leaves nothing behind. Since the ids are explicit, each table's sequence is then
moved past ``max(id)`` so the app's own inserts do not collide. The same ``--seed`` gives
the same rows; only the time anchor (the current minute) moves.

Every run truncates the shop's tables first (a re-seed); with ``--if-empty`` a database
whose ``users`` table has rows is left alone instead, so start-up scripts can call it.

    python -m devstack.seed [--if-empty] [--scale K] [--users N --products N --orders N]
                            [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from tqdm import tqdm

from services.core.settings import Settings

BATCH = 10_000
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

Row = tuple[Any, ...]


DEFAULTS = {"users": 10_000, "products": 1_000, "orders": 50_000}


def _users(rng: random.Random, n: int, now: datetime) -> Iterator[list[Row]]:
    """Users signed up in the 9 months before the order history starts."""
    first, last = FIRST.split(), LAST.split()
    for start in range(1, n + 1, BATCH):
        rows: list[Row] = []
        for i in range(start, min(start + BATCH, n + 1)):
            created = now - HISTORY - timedelta(seconds=rng.randrange(275 * 86_400))
            name = f"{rng.choice(first)} {rng.choice(last)}"
            rows.append((i, f"user{i}@example.com", name, created))
        yield rows


def _products(rng: random.Random, n: int, now: datetime) -> list[Row]:
    adjectives, nouns = ADJECTIVES.split(), NOUNS.split()
    rows: list[Row] = []
    for i in range(1, n + 1):
        created = now - HISTORY - timedelta(seconds=rng.randrange(90 * 86_400))
        name = f"{rng.choice(adjectives)} {rng.choice(nouns)} {i}"
        price = rng.randint(100, 50_000)
        rows.append((i, name, f"cat{(i - 1) % CATEGORIES}", price, STOCK, created, created))
    return rows


def _batches(rows: list[Row]) -> Iterator[list[Row]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


class _OrderHistory:
    """Orders and their items, a batch at a time; ids follow created_at, like a real
    history: batch ``b`` of ``n`` orders falls in the ``b``-th slice of the 90 days."""

    def __init__(
        self, rng: random.Random, n: int, users: int, prices: Sequence[int], now: datetime
    ) -> None:
        self.rng, self.n, self.users, self.prices, self.now = rng, n, users, prices, now
        self.items: list[Row] = []
        self.item_count = 0

    def orders(self) -> Iterator[list[Row]]:
        """Order batches; each leaves its items in ``self.items`` for the caller."""
        rng, history_s = self.rng, HISTORY.total_seconds()
        product_ids = range(1, len(self.prices) + 1)
        for start in range(0, self.n, BATCH):
            size = min(BATCH, self.n - start)
            low, width = history_s * start / self.n, history_s * size / self.n
            offsets = sorted(low + rng.random() * width for _ in range(size))
            orders: list[Row] = []
            self.items = []
            for order_id, offset in enumerate(offsets, start=start + 1):
                total = 0
                for product_id in rng.sample(product_ids, min(rng.randint(1, 5), len(self.prices))):
                    quantity, price = rng.randint(1, 5), self.prices[product_id - 1]
                    total += quantity * price
                    self.item_count += 1
                    self.items.append((self.item_count, order_id, product_id, quantity, price))
                created = self.now - HISTORY + timedelta(seconds=offset)
                orders.append(
                    (order_id, rng.randint(1, self.users), "placed", "sent", total, created)
                )
            yield orders


async def _copy_batch(conn: Any, table: str, rows: Sequence[Row]) -> None:
    await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])


async def _copy(conn: Any, table: str, batches: Iterator[list[Row]], total: int) -> int:
    """COPY each batch of ``table``'s rows (ids 1..n); returns n."""
    copied = 0
    with tqdm(total=total, desc=f"{table:<12}", unit=" rows", file=sys.stderr) as bar:
        for batch in batches:
            await _copy_batch(conn, table, batch)
            copied += len(batch)
            bar.update(len(batch))
    return copied


async def _move_sequence_past(conn: Any, table: str, last_id: int) -> None:
    # Same as setval(..., max(id)) after the TRUNCATE, and right for an empty table too.
    await conn.execute(
        "SELECT setval(s, $2::bigint + 1, false)"
        " FROM pg_get_serial_sequence($1, 'id') AS s WHERE s IS NOT NULL",
        table,
        last_id,
    )


async def seed(dsn: str, args: argparse.Namespace) -> str:
    rng = random.Random(args.seed)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            if args.if_empty:
                # Self-conflicting lock: of two concurrent --if-empty seeds only one fills.
                await conn.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
                    return "seed: users already has rows, nothing to do (--if-empty)"
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
            users = await _copy(conn, "users", _users(rng, args.users, now), args.users)
            await _move_sequence_past(conn, "users", users)
            product_rows = _products(rng, args.products, now)
            products = await _copy(conn, "products", _batches(product_rows), args.products)
            await _move_sequence_past(conn, "products", products)
            history = _OrderHistory(rng, args.orders, args.users, [r[3] for r in product_rows], now)
            orders = 0
            with tqdm(
                total=args.orders, desc="orders+items", unit=" orders", file=sys.stderr
            ) as bar:
                for batch in history.orders():
                    await _copy_batch(conn, "orders", batch)
                    await _copy_batch(conn, "order_items", history.items)
                    orders += len(batch)
                    bar.update(len(batch))
            await _move_sequence_past(conn, "orders", orders)
            await _move_sequence_past(conn, "order_items", history.item_count)
    finally:
        await conn.close()
    return (
        f"seed: {users} users, {products} products, {orders} orders, "
        f"{history.item_count} order items in {time.perf_counter() - started:.1f} s"
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
