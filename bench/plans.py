"""The query plans of the reads the scale comparison measures, as the api runs them:
``EXPLAIN (ANALYZE, BUFFERS)`` of the point read, the user's orders read and a keyset
page deep in the catalogue, on the local stack's database at whatever size it holds.

The statements are compiled from the api's own statement objects (as the raw floors'
are), with parameters of the same kind the bench draws: a user and a cursor in the
middle of the seeded ids. The api sends them as prepared statements, which Postgres
plans generically once it has run them a few times; the plans here are the generic ones
(``plan_cache_mode = force_generic_plan``), so they are what the api runs in a steady
state. A read runs a few times before its plan is taken, as under load.

    python -m bench.plans
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import asyncpg

from bench.floors.sql import POINT_READ, USER_ORDERS, Statement, compiled
from devstack.stack import POSTGRES_PORT, postgres_dsn
from services.core.shop import products

# GET /products?category=...&cursor=...: the statement with both filters.
DEEP_PAGE = compiled(products._PAGES[True, True].statement)
PAGE_LIMIT = 20
WARM_RUNS = 5


@dataclass(frozen=True)
class Plan:
    name: str
    sql: str
    plan: str


def _reads(users: int, product_count: int) -> list[tuple[str, Statement, dict[str, object]]]:
    user = max(1, users // 2)
    # Where bench/lua/deep_page.lua's cursors start: half-way through the catalogue.
    after = max(1, product_count // 2)
    return [
        ("GET /users/{id}: the point read", POINT_READ, {"user_id": user}),
        (
            "GET /users/{id}/orders: the user's orders, first page",
            USER_ORDERS,
            {"user_id": user, "limit": PAGE_LIMIT + 1},
        ),
        (
            "GET /products?category=...&cursor=...: a keyset page deep in the catalogue",
            DEEP_PAGE,
            {"category": "cat3", "after_id": after, "limit": PAGE_LIMIT + 1},
        ),
    ]


async def plans(dsn: str) -> tuple[dict[str, int], list[Plan]]:
    """The table sizes and a plan per read."""
    connection = await asyncpg.connect(dsn)
    try:
        sizes = {
            table: int(await connection.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
            for table in ("users", "products", "orders", "order_items")
        }
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        found = []
        for name, statement, values in _reads(sizes["users"], sizes["products"]):
            arguments = statement.arguments(**values)
            for _ in range(WARM_RUNS):
                await connection.fetch(statement.text, *arguments)
            rows = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement.text}", *arguments
            )
            found.append(Plan(name, statement.text, "\n".join(row[0] for row in rows)))
        return sizes, found
    finally:
        await connection.close()


def markdown(sizes: dict[str, int], found: list[Plan]) -> str:
    counts = ", ".join(f"{count:,} {table}" for table, count in sizes.items())
    lines = [f"Plans at {counts}:", ""]
    for plan in found:
        lines += [f"**{plan.name}**", "", "```", plan.plan, "```", ""]
    return "\n".join(lines)


def main() -> int:
    sizes, found = asyncio.run(plans(postgres_dsn(POSTGRES_PORT)))
    print(markdown(sizes, found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
