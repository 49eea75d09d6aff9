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


SCHEMA = (
    "SELECT string_agg(definition, E'\\n' ORDER BY definition) FROM ("
    " SELECT c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)"
    "  || ' ' || c.convalidated AS definition FROM pg_constraint c"
    "  JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'"
    " UNION ALL SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
    "  JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
    "  WHERE n.nspname = 'public') d"
)


async def test_the_keys_indexes_and_foreign_keys_come_back_as_the_migrations_made_them(
    seed_database: DatabaseEndpoint,
) -> None:
    connection = await asyncpg.connect(seed_database.dsn)
    try:
        await connection.execute(
            "TRUNCATE users, products, orders, order_items, idempotency_keys, outbox,"
            " email_deliveries"
        )
        migrated = await connection.fetchval(SCHEMA)
        await seed(seed_database.dsn, arguments(orders=500))
        assert await connection.fetchval(SCHEMA) == migrated
        assert "fk_order_items_order_id_orders" in migrated
        assert "ix_orders_user_id_id" in migrated
        # Enforced again, not just declared: an item of an order that does not exist.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await connection.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)"
                " VALUES (999999999, 1, 1, 1)"
            )
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute(
                "INSERT INTO users (email, name) VALUES ('user1@example.com', 'Twin')"
            )
        # The planner has the new tables' statistics (the seeder analyzed them).
        analyzed = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY($1::text[])"
            " AND last_analyze IS NOT NULL",
            ["users", "products", "orders", "order_items"],
        )
        assert analyzed == 4
    finally:
        await connection.close()


async def test_a_failed_seed_leaves_the_data_and_the_schema_as_they_were(
    seed_database: DatabaseEndpoint,
) -> None:
    await seed(seed_database.dsn, arguments(orders=300))
    connection = await asyncpg.connect(seed_database.dsn)
    try:
        before = await connection.fetchval(SCHEMA)
        # Orders without users (the command line refuses it; the function does not):
        # the foreign key, rebuilt after the load, finds them and the whole seed fails.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await seed(seed_database.dsn, arguments(users=0, orders=300))
        assert await connection.fetchval("SELECT count(*) FROM orders") == 300
        assert await connection.fetchval(SCHEMA) == before
    finally:
        await connection.close()
