"""Products: catalogue reads with keyset pagination, creation and partial updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.cache import stale_on_commit
from services.core.errors import NotFound
from services.core.models import Product
from services.core.shop import cache_tags

UPDATABLE_FIELDS = frozenset({"name", "category", "price_cents", "stock"})


async def list_products(
    session: AsyncSession, *, category: str | None, after_id: int | None, limit: int
) -> tuple[Sequence[Product], int | None]:
    """One page ordered by id, and the id to continue after (None on the last page).

    Keyset pagination: the cost of page N does not grow with N, unlike OFFSET.
    """
    statement = select(Product).order_by(Product.id).limit(limit + 1)
    if category is not None:
        statement = statement.where(Product.category == category)
    if after_id is not None:
        statement = statement.where(Product.id > after_id)
    rows = (await session.scalars(statement)).all()
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


async def get_product(session: AsyncSession, product_id: int) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise NotFound(f"Product {product_id} does not exist.")
    return product


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
