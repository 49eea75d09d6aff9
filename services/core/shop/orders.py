"""Orders: an eager-loaded read and the lean read of a user's orders (one Core statement
run by the driver on a plain connection). Placing one is ``placement``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Label, Select, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, selectinload

from services.core.db_reads import LeanRead
from services.core.errors import NotFound
from services.core.models import ConfirmationStatus, Order, OrderItem, OrderStatus, User


async def get_order(session: AsyncSession, order_id: int) -> Order:
    order = await session.scalar(
        select(Order).where(Order.id == order_id).options(selectinload(Order.items))
    )
    if order is None:
        raise NotFound(f"Order {order_id} does not exist.")
    return order


class PublicOrderItem(TypedDict):
    product_id: int
    quantity: int
    unit_price_cents: int


class PublicOrder(TypedDict):
    id: int
    user_id: int
    status: OrderStatus
    confirmation_status: ConfirmationStatus
    total_cents: int
    created_at: datetime
    items: list[PublicOrderItem]


def _in_item_order(column: Mapped[int], name: str) -> Label[Sequence[int]]:
    """One field of every item of an order, as an array in item order."""
    return func.array_agg(aggregate_order_by(column, OrderItem.id)).label(name)


def _user_orders(*, before_cursor: bool) -> Select[*tuple[Any, ...]]:
    """The user (always one row if they exist, none if not) joined to a page of their
    orders, newest first, each with its items aggregated into parallel arrays.

    One statement, so one snapshot even outside a transaction, and a user without orders
    is told from an unknown user without a second query.
    """
    page = (
        select(
            Order.id,
            Order.status,
            Order.confirmation_status,
            Order.total_cents,
            Order.created_at,
        )
        .where(Order.user_id == User.id)
        .order_by(Order.id.desc())
        .limit(bindparam("limit"))
    )
    if before_cursor:
        page = page.where(Order.id < bindparam("before_id"))
    orders = page.lateral("page")
    items = (
        select(
            _in_item_order(OrderItem.product_id, "product_ids"),
            _in_item_order(OrderItem.quantity, "quantities"),
            _in_item_order(OrderItem.unit_price_cents, "unit_prices_cents"),
        )
        .where(OrderItem.order_id == orders.c.id)
        .lateral("items")
    )
    return (
        select(User.id.label("user_id"), *orders.c, *items.c)
        .select_from(User)
        .outerjoin(orders, true())
        .outerjoin(items, true())
        .where(User.id == bindparam("user_id"))
        .order_by(orders.c.id.desc())
    )


# Compiled once, run by the driver itself (services.core.db_reads).
_FIRST_PAGE = LeanRead(_user_orders(before_cursor=False))
_NEXT_PAGE = LeanRead(_user_orders(before_cursor=True))


async def list_user_orders(
    connection: AsyncConnection, *, user_id: int, before_id: int | None, limit: int
) -> tuple[list[PublicOrder], int | None]:
    """A user's orders, newest first, with their items, and the id to continue before
    (None on the last page): one statement whatever the number of orders."""
    if before_id is None:
        rows = await _FIRST_PAGE.fetch(connection, user_id=user_id, limit=limit + 1)
    else:
        rows = await _NEXT_PAGE.fetch(
            connection, user_id=user_id, before_id=before_id, limit=limit + 1
        )
    if not rows:
        raise NotFound(f"User {user_id} does not exist.")
    # Columns by position: user_id, id, status, confirmation_status, total_cents,
    # created_at, product_ids, quantities, unit_prices_cents (see _user_orders).
    orders: list[PublicOrder] = [
        {
            "id": order_id,
            "user_id": owner,
            "status": OrderStatus(status),
            "confirmation_status": ConfirmationStatus(confirmation),
            "total_cents": total,
            "created_at": created_at,
            "items": [
                {"product_id": product_id, "quantity": quantity, "unit_price_cents": price}
                for product_id, quantity, price in zip(products, quantities, prices, strict=True)
            ],
        }
        for (
            owner,
            order_id,
            status,
            confirmation,
            total,
            created_at,
            products,
            quantities,
            prices,
        ) in rows
        if order_id is not None  # the user's row alone: no orders (on this page)
    ]
    if len(orders) > limit:
        return orders[:limit], orders[limit - 1]["id"]
    return orders, None
