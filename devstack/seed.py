"""Fill the database with deterministic demo data: users, products and order history.

A load test against an empty shop measures nothing useful: listing pages are empty,
indexes are tiny and every cache is cold. This seeder gives the local stack a realistic
volume (by default 10,000 users, 1,000 products in categories ``cat0``..``cat19`` and
50,000 orders with 1-5 items each, spread over the last 90 days) in a few seconds.

Speed comes from asyncpg's binary ``COPY`` with explicit ids, straight to Postgres
(``migration_database_url``, never through PgBouncer), all in one transaction: a failed
seed leaves nothing behind. Since the ids are explicit, each table's sequence is then
moved past ``max(id)`` so the app's own inserts do not collide. The same ``--seed`` gives
the same rows; only the time anchor (the current minute) moves.

Every run truncates the shop's tables first (a re-seed); with ``--if-empty`` a database
whose ``users`` table has rows is left alone instead, so start-up scripts can call it.

    python -m devstack.seed [--if-empty] [--users N --products N --orders N --seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
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


def _users(rng: random.Random, n: int, now: datetime) -> list[Row]:
    """Users signed up in the 9 months before the order history starts."""
    first, last = FIRST.split(), LAST.split()
    rows: list[Row] = []
    for i in range(1, n + 1):
        created = now - HISTORY - timedelta(seconds=rng.randrange(275 * 86_400))
        name = f"{rng.choice(first)} {rng.choice(last)}"
        rows.append((i, f"user{i}@example.com", name, created))
    return rows


def _products(rng: random.Random, n: int, now: datetime) -> list[Row]:
    adjectives, nouns = ADJECTIVES.split(), NOUNS.split()
    rows: list[Row] = []
    for i in range(1, n + 1):
        created = now - HISTORY - timedelta(seconds=rng.randrange(90 * 86_400))
        name = f"{rng.choice(adjectives)} {rng.choice(nouns)} {i}"
        price = rng.randint(100, 50_000)
        rows.append((i, name, f"cat{(i - 1) % CATEGORIES}", price, STOCK, created, created))
    return rows


def _orders(
    rng: random.Random, n: int, users: int, prices: Sequence[int], now: datetime
) -> tuple[list[Row], list[Row]]:
    """Orders and their items; ids follow created_at, like a real history."""
    seconds = sorted(rng.random() * HISTORY.total_seconds() for _ in range(n))
    product_ids = range(1, len(prices) + 1)
    orders: list[Row] = []
    items: list[Row] = []
    for order_id, offset in enumerate(seconds, start=1):
        total = 0
        for product_id in rng.sample(product_ids, min(rng.randint(1, 5), len(prices))):
            quantity, price = rng.randint(1, 5), prices[product_id - 1]
            total += quantity * price
            items.append((len(items) + 1, order_id, product_id, quantity, price))
        created = now - HISTORY + timedelta(seconds=offset)
        orders.append((order_id, rng.randint(1, users), "placed", "sent", total, created))
    return orders, items


async def _copy(conn: Any, table: str, rows: Sequence[Row]) -> None:
    """COPY ``rows`` (ids 1..n) in batches, then move the id sequence past them."""
    with tqdm(total=len(rows), desc=f"{table:<12}", unit=" rows", file=sys.stderr) as bar:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            await conn.copy_records_to_table(table, records=batch, columns=COLUMNS[table])
            bar.update(len(batch))
    # Same as setval(..., max(id)) after the TRUNCATE, and right for an empty table too.
    await conn.execute(
        "SELECT setval(s, $2::bigint + 1, false)"
        " FROM pg_get_serial_sequence($1, 'id') AS s WHERE s IS NOT NULL",
        table,
        len(rows),
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
            users = _users(rng, args.users, now)
            await _copy(conn, "users", users)
            products = _products(rng, args.products, now)
            await _copy(conn, "products", products)
            prices = [row[3] for row in products]
            orders, items = _orders(rng, args.orders, args.users, prices, now)
            await _copy(conn, "orders", orders)
            await _copy(conn, "order_items", items)
    finally:
        await conn.close()
    return (
        f"seed: {len(users)} users, {len(products)} products, {len(orders)} orders, "
        f"{len(items)} order items in {time.perf_counter() - started:.1f} s"
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
    parser.add_argument("--users", type=_count, default=10_000, metavar="N")
    parser.add_argument("--products", type=_count, default=1_000, metavar="N")
    parser.add_argument("--orders", type=_count, default=50_000, metavar="N")
    parser.add_argument("--seed", type=int, default=42, metavar="S", help="default 42")
    args = parser.parse_args(argv)
    if args.orders and not (args.users and args.products):
        parser.error("--orders needs at least one user and one product")
    url = make_url(Settings().migration_database_url).set(drivername="postgresql")
    print(asyncio.run(seed(url.render_as_string(hide_password=False), args)))


if __name__ == "__main__":
    main()
