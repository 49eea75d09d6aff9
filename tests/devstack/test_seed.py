"""The seeder, into a database of its own: counts, a history whose ids follow time,
totals that add up, sequences past the seeded ids, and the same rows for the same seed."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import asyncpg
import pytest

from devstack.seed import BATCH, seed
from services.migrations import runner
from tests.support.endpoints import APP_USER, DatabaseEndpoint

USERS, PRODUCTS, ORDERS = 300, 40, 2 * BATCH + 123  # three batches of orders


@pytest.fixture(scope="module")
def seed_database(migrated_postgres: DatabaseEndpoint) -> DatabaseEndpoint:
    admin = migrated_postgres.admin
    assert admin is not None
    admin.psql("DROP DATABASE IF EXISTS seed_test")
    admin.psql(f"CREATE DATABASE seed_test OWNER {APP_USER}")
    database = DatabaseEndpoint(
        migrated_postgres.host,
        migrated_postgres.port,
        migrated_postgres.process,
        database="seed_test",
    )
    runner.upgrade(database.url)
    return database


def arguments(**overrides: object) -> argparse.Namespace:
    values = {
        "if_empty": False,
        "users": USERS,
        "products": PRODUCTS,
        "orders": ORDERS,
        "seed": 7,
        **overrides,
    }
    return argparse.Namespace(**values)


@pytest.fixture
async def seeded(seed_database: DatabaseEndpoint) -> AsyncIterator[asyncpg.Connection]:
    await seed(seed_database.dsn, arguments())
    connection = await asyncpg.connect(seed_database.dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def test_the_counts_and_a_history_in_time_order(seeded: asyncpg.Connection) -> None:
    counts = {
        table: await seeded.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        for table in ("users", "products", "orders")
    }
    assert counts == {"users": USERS, "products": PRODUCTS, "orders": ORDERS}
    out_of_order = await seeded.fetchval(
        "SELECT count(*) FROM (SELECT created_at < lag(created_at) OVER (ORDER BY id) AS back"
        " FROM orders) t WHERE back"
    )
    assert out_of_order == 0
    items_per_order = await seeded.fetchrow(
        "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM order_items GROUP BY order_id) t"
    )
    assert items_per_order is not None
    assert (items_per_order[0], items_per_order[1]) == (1, 5)


async def test_totals_add_up_and_the_app_inserts_after_the_seeded_ids(
    seeded: asyncpg.Connection,
) -> None:
    wrong_totals = await seeded.fetchval(
        "SELECT count(*) FROM orders o JOIN (SELECT order_id, sum(quantity * unit_price_cents)"
        " AS total FROM order_items GROUP BY order_id) i ON i.order_id = o.id"
        " WHERE i.total <> o.total_cents"
    )
    assert wrong_totals == 0
    for table in ("users", "products", "orders", "order_items"):
        highest = await seeded.fetchval(f"SELECT max(id) FROM {table}")  # noqa: S608
        following = await seeded.fetchval("SELECT nextval(pg_get_serial_sequence($1, 'id'))", table)
        assert following == highest + 1, table


async def test_the_same_seed_gives_the_same_rows(seed_database: DatabaseEndpoint) -> None:
    fingerprint = (
        "SELECT md5(string_agg(concat_ws(',', o.id, o.user_id, o.total_cents), ';' ORDER BY o.id))"
        " || md5(string_agg(DISTINCT u.name, ';')) FROM orders o JOIN users u ON u.id = o.user_id"
    )
    prints = []
    for _ in range(2):
        await seed(seed_database.dsn, arguments())
        connection = await asyncpg.connect(seed_database.dsn)
        try:
            prints.append(await connection.fetchval(fingerprint))
        finally:
            await connection.close()
    assert prints[0] == prints[1]
