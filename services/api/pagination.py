"""Keyset pagination: opaque cursors (the id to continue from, never an offset) and the
query parameters shared by the paginated routes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated

from fastapi import Query

from services.api.schemas.common import MAX_BIGINT
from services.core.errors import BadRequest

_PREFIX = "k1:"  # a version, so the cursor format can change without misreading old ones


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("The cursor is not valid.") from None
    if not raw.startswith(_PREFIX) or not raw[len(_PREFIX) :].isdigit():
        raise BadRequest("The cursor is not valid.")
    value = int(raw[len(_PREFIX) :])
    if not 0 < value <= MAX_BIGINT:
        raise BadRequest("The cursor is not valid.")
    return value


MAX_PAGE_LIMIT = 100

Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_LIMIT, description=f"Page size, at most {MAX_PAGE_LIMIT}.")
]
Cursor = Annotated[
    str | None,
    Query(max_length=64, description="The `next_cursor` of the previous page."),
]


def cursor_id(cursor: str | None) -> int | None:
    return decode_cursor(cursor) if cursor else None


def page(items: Sequence[object], last_id: int | None) -> dict[str, object]:
    """The fields of a ``Page``: ``items`` and the cursor for the next page."""
    return {
        "items": items,
        "next_cursor": encode_cursor(last_id) if last_id is not None else None,
    }
