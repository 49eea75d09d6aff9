"""Orders: placement (stock and idempotency, all or nothing, confirmation enqueued through
the outbox in the same transaction), an eager-loaded read, and the lean read of a user's
orders (one Core statement on a plain connection)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Label, Select, bindparam, func, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, selectinload
from sqlalchemy.types import BigInteger, Integer

from services.core.cache import stale_on_commit
from services.core.errors import (
    IdempotencyKeyReused,
    InsufficientStock,
    NotFound,
    UnknownReference,
)
from services.core.models import (
    ConfirmationStatus,
    IdempotencyKey,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    User,
)
from services.core.outbox import SEND_ORDER_CONFIRMATION, enqueue
from services.core.shop import cache_tags
from services.core.shop.users import user_exists


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: int
    quantity: int


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The answer given to the first request with an Idempotency-Key."""

    status: int
    body: str


async def claim_idempotency_key(
    session: AsyncSession, key: str, fingerprint: str
) -> StoredResponse | None:
    """Claim ``key`` for this transaction, or return the answer stored under it.

    The insert takes the key's unique-index lock: a concurrent request with the same key
    waits here until the first transaction ends. If it committed, its answer is
    returned; if it rolled back (e.g. out of stock), this request claims the key itself.
    """
    claimed = await session.scalar(
        insert(IdempotencyKey)
        .values(key=key, request_fingerprint=fingerprint)
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.key])
        .returning(IdempotencyKey.key)
    )
    if claimed is not None:
        return None
    existing = (
        await session.execute(
            select(
                IdempotencyKey.request_fingerprint,
                IdempotencyKey.response_status,
                IdempotencyKey.response_body,
            ).where(IdempotencyKey.key == key)
        )
    ).one()
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used for a request with a different body."
        )
    # Written in the same transaction as the key: a committed key always has its answer.
    assert existing.response_status is not None
    assert existing.response_body is not None
    return StoredResponse(status=existing.response_status, body=existing.response_body)


async def record_idempotent_response(
    session: AsyncSession, key: str, order_id: int, response: StoredResponse
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.key == key)
        .values(order_id=order_id, response_status=response.status, response_body=response.body)
    )


async def place_order(session: AsyncSession, *, user_id: int, lines: Sequence[OrderLine]) -> Order:
    """Create an order, decrementing stock atomically, and enqueue its confirmation email.

    Raises before writing anything that the caller's rollback would not undo. The email
    is an outbox row in this same transaction: it is sent if and only if the order
    commits, never from the request itself (no background task, no broker call here).
    Committing makes the user's order list and every product whose stock moved stale.
    """
    if not await user_exists(session, user_id):
        raise UnknownReference(f"User {user_id} does not exist.", field="user_id")

    wanted = Counter[int]()
    for line in lines:
        wanted[line.product_id] += line.quantity
    product_ids = sorted(wanted)

    # Lock the products in id order: concurrent orders over the same products queue up
    # instead of deadlocking, and the stock check below cannot race.
    locked = (
        await session.execute(
            select(Product.id, Product.price_cents, Product.stock)
            .where(Product.id.in_(product_ids))
            .order_by(Product.id)
            .with_for_update()
        )
    ).all()
    found = {row.id: row for row in locked}
    missing = [pid for pid in product_ids if pid not in found]
    if missing:
        raise UnknownReference(
            f"Unknown product(s): {', '.join(map(str, missing))}.", product_ids=missing
        )
    short = [pid for pid in product_ids if found[pid].stock < wanted[pid]]
    if short:
        raise InsufficientStock(
            f"Not enough stock for product(s): {', '.join(map(str, short))}.",
            product_ids=short,
        )

    quantities = [wanted[pid] for pid in product_ids]
    deltas = select(
        func.unnest(bindparam("ids", product_ids, type_=ARRAY(BigInteger))).label("id"),
        func.unnest(bindparam("qtys", quantities, type_=ARRAY(Integer))).label("qty"),
    ).subquery("deltas")
    await session.execute(
        update(Product)
        .where(Product.id == deltas.c.id)
        .values(stock=Product.stock - deltas.c.qty, updated_at=func.now())
    )

    items = [
        OrderItem(
            product_id=line.product_id,
            quantity=line.quantity,
            unit_price_cents=found[line.product_id].price_cents,
        )
        for line in lines
    ]
    order = Order(
        user_id=user_id,
        status=OrderStatus.PLACED,
        confirmation_status=ConfirmationStatus.PENDING,
        total_cents=sum(item.quantity * item.unit_price_cents for item in items),
        items=items,
    )
    session.add(order)
    await session.flush()
    enqueue(session, SEND_ORDER_CONFIRMATION, {"order_id": order.id})
    await session.flush()
    stale_on_commit(session, cache_tags.user_orders(user_id), *map(cache_tags.product, product_ids))
    return order


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


# Built once: SQLAlchemy then finds their compiled forms by cache keys memoized on them.
_FIRST_PAGE = _user_orders(before_cursor=False)
_NEXT_PAGE = _user_orders(before_cursor=True)


async def list_user_orders(
    connection: AsyncConnection, *, user_id: int, before_id: int | None, limit: int
) -> tuple[list[PublicOrder], int | None]:
    """A user's orders, newest first, with their items, and the id to continue before
    (None on the last page): one statement whatever the number of orders."""
    statement = _FIRST_PAGE if before_id is None else _NEXT_PAGE
    parameters = {"user_id": user_id, "before_id": before_id, "limit": limit + 1}
    rows = (await connection.execute(statement, parameters)).all()
    if not rows:
        raise NotFound(f"User {user_id} does not exist.")
    orders: list[PublicOrder] = [
        {
            "id": row.id,
            "user_id": row.user_id,
            "status": row.status,
            "confirmation_status": row.confirmation_status,
            "total_cents": row.total_cents,
            "created_at": row.created_at,
            "items": [
                {"product_id": product_id, "quantity": quantity, "unit_price_cents": price}
                for product_id, quantity, price in zip(
                    row.product_ids, row.quantities, row.unit_prices_cents, strict=True
                )
            ],
        }
        for row in rows
        if row.id is not None  # the user's row alone: no orders (on this page)
    ]
    if len(orders) > limit:
        return orders[:limit], orders[limit - 1]["id"]
    return orders, None
