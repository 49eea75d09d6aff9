"""The api's SQL, as the raw-asyncpg floors send it: the same statements, columns and
parameter types, so a floor differs from the api only in what runs around them.

The reads are compiled from the api's own statement objects with SQLAlchemy's asyncpg
dialect, so they cannot drift from what the routes run. The order write is the ORM
flush's output, which has no statement object to compile: its statements are written
out here, in the order ``POST /orders`` sends them, and ``tests/bench/test_sql.py``
checks them against the statements the api really sends. When the write path changes,
that test fails and shows the new statements: update ``ORDER_WRITE`` and
:func:`bench.floors.order_write.place_order` together.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from services.core.shop import orders, users


@dataclass(frozen=True)
class Statement:
    """SQL text with ``$n`` placeholders, and the names of its parameters in order."""

    text: str
    parameters: tuple[str, ...]

    def arguments(self, **values: object) -> tuple[object, ...]:
        """``values`` in the order of the placeholders."""
        return tuple(values[name] for name in self.parameters)


def compiled(statement: ClauseElement) -> Statement:
    """``statement`` as the api's engine sends it to asyncpg."""
    result = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    assert isinstance(result, SQLCompiler)
    return Statement(str(result), tuple(result.positiontup or ()))


POINT_READ = compiled(users._PUBLIC_USER)
# The first page, as GET /users/{id}/orders without a cursor runs it.
USER_ORDERS = compiled(orders._FIRST_PAGE)


def _placeholders(first: int, count: int, cast: str) -> str:
    return ", ".join(f"${n}::{cast}" for n in range(first, first + count))


def _item_rows(items: int) -> str:
    rows = (
        f"(${4 * i + 1}::BIGINT, ${4 * i + 2}::BIGINT, ${4 * i + 3}::INTEGER, "
        f"${4 * i + 4}::INTEGER, {i})"
        for i in range(items)
    )
    return ", ".join(rows)


@dataclass(frozen=True)
class OrderWrite:
    """``POST /orders`` with an Idempotency-Key, for an order of ``items`` lines on as
    many distinct products, in the order the api sends them (inside BEGIN ... COMMIT)."""

    items: int

    @property
    def claim_key(self) -> str:
        return (
            "INSERT INTO idempotency_keys (key, request_fingerprint) "
            "VALUES ($1::VARCHAR, $2::VARCHAR) ON CONFLICT (key) DO NOTHING "
            "RETURNING idempotency_keys.key"
        )

    @property
    def user_exists(self) -> str:
        return "SELECT users.id \nFROM users \nWHERE users.id = $1::BIGINT"

    @property
    def lock_products(self) -> str:
        return (
            "SELECT products.id, products.price_cents, products.stock \nFROM products \n"
            f"WHERE products.id IN ({_placeholders(1, self.items, 'BIGINT')}) "
            "ORDER BY products.id FOR UPDATE"
        )

    @property
    def take_stock(self) -> str:
        return (
            "UPDATE products SET stock=(products.stock - deltas.qty), updated_at=now() "
            "FROM (SELECT unnest($1::BIGINT[]) AS id, unnest($2::INTEGER[]) AS qty) AS deltas "
            "WHERE products.id = deltas.id RETURNING products.id"
        )

    @property
    def insert_order(self) -> str:
        return (
            "INSERT INTO orders (user_id, status, confirmation_status, total_cents) "
            "VALUES ($1::BIGINT, $2::order_status, $3::confirmation_status, $4::BIGINT) "
            "RETURNING orders.id, orders.created_at"
        )

    @property
    def insert_items(self) -> str:
        # Only placeholders and row numbers are formatted in, never a value.
        return (
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) "  # noqa: S608
            "SELECT p0::BIGINT, p1::BIGINT, p2::INTEGER, p3::INTEGER "
            f"FROM (VALUES {_item_rows(self.items)}) "
            "AS imp_sen(p0, p1, p2, p3, sen_counter) ORDER BY sen_counter "
            "RETURNING order_items.id, order_items.id AS id__1"
        )

    @property
    def enqueue_confirmation(self) -> str:
        return (
            "INSERT INTO outbox (task, payload, published_at, publish_count, done_at, "
            "dead_at, last_error) VALUES ($1::VARCHAR, $2::JSONB, "
            "$3::TIMESTAMP WITH TIME ZONE, $4::INTEGER, $5::TIMESTAMP WITH TIME ZONE, "
            "$6::TIMESTAMP WITH TIME ZONE, $7::VARCHAR) RETURNING outbox.id, outbox.created_at"
        )

    @property
    def record_response(self) -> str:
        return (
            "UPDATE idempotency_keys SET order_id=$1::BIGINT, response_status=$2::INTEGER, "
            "response_body=$3::VARCHAR WHERE idempotency_keys.key = $4::VARCHAR"
        )

    def statements(self) -> list[str]:
        """Every statement, in the order they are sent."""
        return [
            self.claim_key,
            self.user_exists,
            self.lock_products,
            self.take_stock,
            self.insert_order,
            self.insert_items,
            self.enqueue_confirmation,
            self.record_response,
        ]
