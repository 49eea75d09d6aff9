"""Keyset pagination: cursors (the id to continue from, never an offset) and the
query parameters shared by the paginated routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Query

from services.api.schemas.common import MAX_BIGINT

# ``k2_`` and the id in lower-case hex, without leading zeros. A version prefix, so the
# format can change without misreading old cursors (``k1`` was base64, which no schema
# pattern can bound: a cursor the schema allowed could still be refused). The pattern
# admits exactly the ids 1 to 2**63 - 1, so every cursor it allows is a valid one.
_PREFIX = "k2_"
CURSOR_PATTERN = r"^k2_([1-9a-f][0-9a-f]{0,14}|[1-7][0-9a-f]{15})$"


def encode_cursor(last_id: int) -> str:
    return f"{_PREFIX}{last_id:x}"


def decode_cursor(cursor: str) -> int:
    """The id in a cursor that matched ``CURSOR_PATTERN`` (checked by the query's
    validation before any route runs)."""
    value = int(cursor.removeprefix(_PREFIX), 16)
    assert 0 < value <= MAX_BIGINT, cursor
    return value


MAX_PAGE_LIMIT = 100

Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_LIMIT, description=f"Page size, at most {MAX_PAGE_LIMIT}.")
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the previous page.",
    ),
]


def cursor_id(cursor: str | None) -> int | None:
    return decode_cursor(cursor) if cursor else None


def page(items: Sequence[object], last_id: int | None) -> dict[str, object]:
    """The fields of a ``Page``: ``items`` and the cursor for the next page."""
    return {
        "items": items,
        "next_cursor": encode_cursor(last_id) if last_id is not None else None,
    }
