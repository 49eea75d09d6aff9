"""Products: lean catalogue reads (Core statements run by the driver on a plain
connection, keyset pagination), creation and partial updates (the caller's unit of
work)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.core.cache import stale_on_commit
from services.core.db_reads import LeanRead
from services.core.errors import NotFound
from services.core.models import Product
from services.core.shop import cache_tags

UPDATABLE_FIELDS = frozenset({"name", "category", "price_cents", "stock"})


class PublicProduct(TypedDict):
    id: int
    name: str
    category: str
    price_cents: int
    stock: int
    updated_at: datetime


def _public_products() -> Select[int, str, str, int, int, datetime]:
    return select(
        Product.id,
        Product.name,
        Product.category,
        Product.price_cents,
        Product.stock,
        Product.updated_at,
    )


def _page(*, in_category: bool, after_cursor: bool) -> Select[int, str, str, int, int, datetime]:
    statement = _public_products().order_by(Product.id).limit(bindparam("limit"))
    if in_category:
        statement = statement.where(Product.category == bindparam("category"))
    if after_cursor:
        statement = statement.where(Product.id > bindparam("after_id"))
    return statement


# Compiled once, run by the driver itself (services.core.db_reads). One statement per
# filter combination rather than ``:category IS NULL OR ...``, which a generic plan could
# not answer from the (category, id) index.
_PAGES = {
    (in_category, after_cursor): LeanRead(_page(in_category=in_category, after_cursor=after_cursor))
    for in_category in (False, True)
    for after_cursor in (False, True)
}
_PRODUCT_BY_ID = LeanRead(_public_products().where(Product.id == bindparam("product_id")))


async def list_products(
    connection: AsyncConnection, *, category: str | None, after_id: int | None, limit: int
) -> tuple[Sequence[PublicProduct], int | None]:
    """One page ordered by id, and the id to continue after (None on the last page).

    Keyset pagination: the cost of page N does not grow with N, unlike OFFSET.
    """
    statement = _PAGES[category is not None, after_id is not None]
    records = await statement.fetch(
        connection, category=category, after_id=after_id, limit=limit + 1
    )
    rows = [cast(PublicProduct, dict(record)) for record in records]
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1]["id"]
    return rows, None


async def get_product(connection: AsyncConnection, product_id: int) -> PublicProduct:
    """The product's public fields: ``id, name, category, price_cents, stock,
    updated_at``."""
    rows = await _PRODUCT_BY_ID.fetch(connection, product_id=product_id)
    if not rows:
        raise NotFound(f"Product {product_id} does not exist.")
    return cast(PublicProduct, dict(rows[0]))


async def create_product(
    session: AsyncSession, *, name: str, category: str, price_cents: int, stock: int
) -> Product:
    """Add a product; committing makes every list page stale."""
    product = Product(name=name, category=category, price_cents=price_cents, stock=stock)
    session.add(product)
    # Server defaults (timestamps) come back with INSERT ... RETURNING (eager_defaults).
    await session.flush()
    stale_on_commit(session, cache_tags.PRODUCT_LISTS)
    return product


async def update_product(
    session: AsyncSession, product_id: int, changes: Mapping[str, Any]
) -> Product:
    """Apply ``changes``; committing makes the product and every list page stale (its
    category may have moved it between lists)."""
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    product = await session.get(Product, product_id, with_for_update=True)
    if product is None:
        raise NotFound(f"Product {product_id} does not exist.")
    for field, value in changes.items():
        setattr(product, field, value)
    product.updated_at = func.now()
    await session.flush()
    # updated_at was computed by the server; read it back now, not lazily after commit.
    await session.refresh(product, attribute_names=["updated_at"])
    stale_on_commit(session, cache_tags.product(product_id), cache_tags.PRODUCT_LISTS)
    return product
