"""Placing an order: the idempotency claim, the stock check-and-decrement, the order, its
items and its outbox row in ONE statement (data-modifying CTEs), so the transaction is
open for one round trip of work instead of one per step.

Why one statement: through PgBouncer in transaction mode every statement costs two round
trips (prepare, execute), and between round trips the api's event loop serves other
requests while the transaction, and the server connection under it, waits idle. The
fewer round trips inside the transaction, the shorter each server connection is held
and the fewer are needed. Everything the statement needs (the merged quantities, the
cache tags) is computed before it starts.

Why SQL text and not SQLAlchemy Core: the steps depend on one another's results
(RETURNING of one CTE feeding the next, a gate evaluated once); written out, the order
of events and the locks are readable in one place.

The guarantees, and what in the statement keeps each:

* Idempotency under concurrent duplicates: the key is inserted first (``claim``); a
  concurrent request with the same key waits on the key's unique index until the first
  transaction ends. Every later step is gated on the claim, so a duplicate that finds
  the key taken writes and locks nothing; the caller then reads the stored answer in a
  new statement (:func:`stored_response`), whose snapshot sees the first commit.
* No overselling, no deadlocks: the products are locked ``FOR UPDATE`` in id order
  (``locked``; the lock is taken above the sort), the stock is checked against the
  locked rows, and the decrement only runs when every line fits. Two orders over the
  same products queue up in the same order.
* All or nothing: a failed check (unknown user or product, not enough stock) makes the
  statement write nothing after the claim; the caller raises and the request's rollback
  undoes the claim.
* The outbox row is inserted by the same statement, so in the same transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.cache import stale_on_commit
from services.core.errors import IdempotencyKeyReused, InsufficientStock, UnknownReference
from services.core.models import ConfirmationStatus, OrderStatus
from services.core.outbox import SEND_ORDER_CONFIRMATION
from services.core.shop import cache_tags


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: int
    quantity: int


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A client's ``Idempotency-Key`` and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The answer given to the first request with an Idempotency-Key."""

    status: int
    body: str


@dataclass(frozen=True, slots=True)
class PlacedItem:
    product_id: int
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """A new order as it was placed (readable like the ``Order`` model)."""

    id: int
    user_id: int
    total_cents: int
    created_at: datetime
    items: tuple[PlacedItem, ...]
    status: OrderStatus = OrderStatus.PLACED
    confirmation_status: ConfirmationStatus = ConfirmationStatus.PENDING


_PLACE = text(
    """
WITH claim AS (
    INSERT INTO idempotency_keys (key, request_fingerprint)
    SELECT :key, :fingerprint WHERE :key IS NOT NULL
    ON CONFLICT (key) DO NOTHING
    RETURNING key
), gate AS (
    SELECT :key IS NULL OR EXISTS (SELECT FROM claim) AS claimed
), wanted AS (
    SELECT * FROM unnest(CAST(:wanted_ids AS bigint[]), CAST(:wanted_qtys AS integer[]))
        AS wanted (id, quantity)
), buyer AS (
    SELECT id FROM users WHERE id = :user_id AND (SELECT claimed FROM gate)
), locked AS (
    SELECT id, price_cents, stock FROM products
    WHERE id = ANY (CAST(:wanted_ids AS bigint[])) AND (SELECT claimed FROM gate)
    ORDER BY id
    FOR UPDATE
), verdict AS (
    SELECT
        (SELECT claimed FROM gate) AS claimed,
        EXISTS (SELECT FROM buyer) AS user_known,
        ARRAY(
            SELECT wanted.id FROM wanted LEFT JOIN locked USING (id)
            WHERE locked.id IS NULL ORDER BY wanted.id
        ) AS unknown_ids,
        ARRAY(
            SELECT wanted.id FROM wanted JOIN locked USING (id)
            WHERE locked.stock < wanted.quantity ORDER BY wanted.id
        ) AS short_ids
), go AS (
    SELECT claimed AND user_known AND unknown_ids = '{}' AND short_ids = '{}' AS ok
    FROM verdict
), taken AS (
    UPDATE products SET stock = products.stock - wanted.quantity, updated_at = now()
    FROM wanted
    WHERE products.id = wanted.id AND (SELECT ok FROM go)
    RETURNING products.id
), lines AS (
    SELECT line.product_id, line.quantity, line.n, locked.price_cents
    FROM unnest(CAST(:line_ids AS bigint[]), CAST(:line_qtys AS integer[]))
        WITH ORDINALITY AS line (product_id, quantity, n)
    JOIN locked ON locked.id = line.product_id
), placed AS (
    INSERT INTO orders (user_id, status, confirmation_status, total_cents)
    SELECT :user_id, CAST(:status AS order_status),
        CAST(:confirmation_status AS confirmation_status),
        (SELECT sum(CAST(quantity AS bigint) * price_cents) FROM lines)
    WHERE (SELECT ok FROM go)
    RETURNING id, created_at, total_cents
), items AS (
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
    SELECT placed.id, lines.product_id, lines.quantity, lines.price_cents
    FROM placed CROSS JOIN lines
    ORDER BY lines.n
    RETURNING id
), message AS (
    INSERT INTO outbox (task, payload)
    SELECT :task, jsonb_build_object('order_id', placed.id) FROM placed
    RETURNING id
)
SELECT verdict.claimed, verdict.user_known, verdict.unknown_ids, verdict.short_ids,
    placed.id, placed.created_at, placed.total_cents,
    ARRAY(SELECT price_cents FROM lines ORDER BY n) AS unit_prices_cents
FROM verdict LEFT JOIN placed ON true
"""
).bindparams(
    bindparam("key", type_=String),
    bindparam("fingerprint", type_=String),
    bindparam("user_id", type_=BigInteger),
    bindparam("wanted_ids", type_=ARRAY(BigInteger)),
    bindparam("wanted_qtys", type_=ARRAY(Integer)),
    bindparam("line_ids", type_=ARRAY(BigInteger)),
    bindparam("line_qtys", type_=ARRAY(Integer)),
    bindparam("status", type_=String),
    bindparam("confirmation_status", type_=String),
    bindparam("task", type_=String),
)

_STORED = text(
    "SELECT request_fingerprint, response_status, response_body"
    " FROM idempotency_keys WHERE key = :key"
)

_RECORD = text(
    "UPDATE idempotency_keys"
    " SET order_id = :order_id, response_status = :status, response_body = :body"
    " WHERE key = :key"
)


async def place_order(
    session: AsyncSession,
    *,
    user_id: int,
    lines: Sequence[OrderLine],
    idempotency: IdempotencyClaim | None = None,
) -> PlacedOrder | StoredResponse:
    """Claim ``idempotency``'s key (if given) and place the order, all or nothing.

    Returns the stored answer instead when the key was used before (a concurrent request
    with it is waited for). Raises ``UnknownReference``, ``InsufficientStock`` or
    ``IdempotencyKeyReused`` after writing nothing the caller's rollback would not undo.
    The confirmation email is an outbox row of this transaction; committing makes the
    user's order list and every product whose stock moved stale.
    """
    wanted = Counter[int]()
    for line in lines:
        wanted[line.product_id] += line.quantity
    product_ids = sorted(wanted)
    stale = (cache_tags.user_orders(user_id), *map(cache_tags.product, product_ids))
    row = (
        await session.execute(
            _PLACE,
            {
                "key": idempotency.key if idempotency else None,
                "fingerprint": idempotency.fingerprint if idempotency else None,
                "user_id": user_id,
                "wanted_ids": product_ids,
                "wanted_qtys": [wanted[pid] for pid in product_ids],
                "line_ids": [line.product_id for line in lines],
                "line_qtys": [line.quantity for line in lines],
                "status": OrderStatus.PLACED.value,
                "confirmation_status": ConfirmationStatus.PENDING.value,
                "task": SEND_ORDER_CONFIRMATION,
            },
        )
    ).one()
    if not row.claimed:
        assert idempotency is not None  # without a key there is nothing to be refused
        return await stored_response(session, idempotency)
    if not row.user_known:
        raise UnknownReference(f"User {user_id} does not exist.", field="user_id")
    if row.unknown_ids:
        missing = list(row.unknown_ids)
        raise UnknownReference(
            f"Unknown product(s): {', '.join(map(str, missing))}.", product_ids=missing
        )
    if row.short_ids:
        short = list(row.short_ids)
        raise InsufficientStock(
            f"Not enough stock for product(s): {', '.join(map(str, short))}.",
            product_ids=short,
        )
    stale_on_commit(session, *stale)
    return PlacedOrder(
        id=row.id,
        user_id=user_id,
        total_cents=row.total_cents,
        created_at=row.created_at,
        items=tuple(
            PlacedItem(line.product_id, line.quantity, price)
            for line, price in zip(lines, row.unit_prices_cents, strict=True)
        ),
    )


async def stored_response(session: AsyncSession, claim: IdempotencyClaim) -> StoredResponse:
    """The answer stored under ``claim.key`` by a committed request.

    A statement of its own: its snapshot, taken after the claim waited for the first
    request's commit, sees that request's answer.
    """
    existing = (await session.execute(_STORED, {"key": claim.key})).one()
    if existing.request_fingerprint != claim.fingerprint:
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
        _RECORD,
        {"key": key, "order_id": order_id, "status": response.status, "body": response.body},
    )
