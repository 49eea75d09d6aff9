"""The api's SQL, as the raw-asyncpg floors send it: the same statements, columns and
parameter types, so a floor differs from the api only in what runs around them.

Every statement is compiled from the api's own statement objects with SQLAlchemy's
asyncpg dialect, so it cannot drift from what the routes run;
``tests/bench/test_raw_asyncpg_floor.py`` checks them against the statements the api
really sends, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from services.core.shop import orders, placement, users


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


# POST /orders with an Idempotency-Key: the one statement that claims the key and places
# the order (the answer is built from what it returns), then the recording of the answer.
PLACE_ORDER = compiled(placement._PLACE)
RECORD_RESPONSE = compiled(placement._RECORD)
ORDER_WRITE = [PLACE_ORDER.text, RECORD_RESPONSE.text]
