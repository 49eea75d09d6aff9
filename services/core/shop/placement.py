"""Placing an order: the idempotency claim, the stock check-and-decrement, the order, its
items, its outbox row and the stored answer in ONE statement: a call of the database
function ``place_order`` (migration 0005), whose middle is one statement of
data-modifying CTEs.

Why one statement: through PgBouncer every round trip is a hand-off through the pooler,
and between round trips the api's event loop serves other requests while a transaction,
and the server connection under it, waits idle. One statement needs no transaction of
its own: where the pooler tracks prepared statements the api runs it in autocommit
(``services.core.db.create_read_engine``), so an order is ONE round trip, no BEGIN and
no COMMIT (before: BEGIN, the order, the stored answer, COMMIT); with the old pooler's
safe mode it runs inside BEGIN/COMMIT. The answer (``OrderPublic`` as JSON) is rendered
by the function too: no Python model per order, and a replay returns the same bytes.

Why a function and not one statement of CTEs: the claim must come first (so that a
duplicate waiting for its key holds no product lock) and the answer must be stored on
the claimed row last (once the order exists); CTEs of one statement do not see one
another's rows, a function's statements do. Why SQL at all: the steps depend on one
another's results (RETURNING of one CTE feeding the next, a gate evaluated once);
written out, the order of events and the locks are readable in one place.

The guarantees, and what in the function keeps each:

* Idempotency under concurrent duplicates: the key is inserted first (``ON CONFLICT DO
  NOTHING``); a concurrent request with the same key waits on the key's unique index
  until the first one's transaction ends, holding nothing else. A duplicate that finds
  the key taken writes and locks nothing and reads the stored answer in a statement of
  its own, whose snapshot sees the first commit.
* No overselling, no deadlocks: the products are locked ``FOR UPDATE`` in id order
  (``locked``; the lock is taken above the sort), the stock is checked against the
  locked rows, and the decrement only runs when every line fits. Two orders over the
  same products queue up in the same order.
* All or nothing: a failed check (unknown user or product, not enough stock) makes the
  CTEs write nothing and the function deletes its claim (as a rollback would have), so
  the key can be used again; a failed statement is undone whole.
* The outbox row is inserted by the same statement, so in the same transaction.
* The cache tags the order makes stale are returned to the caller, which invalidates
  them once the statement has committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

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
class Placed:
    """A new order: its answer (``OrderPublic`` as JSON, rendered by the statement, the
    same bytes as stored for a replay) and the cache tags its commit made stale."""

    body: str
    stale: tuple[str, ...]


# The function is defined by migration 0005 (services/migrations/versions).
_PLACE = text(
    "SELECT claimed, user_known, unknown_ids, short_ids, body,"
    " request_fingerprint, response_status, response_body"
    " FROM place_order(:key, :fingerprint, :user_id, :wanted_ids, :wanted_qtys,"
    " :line_ids, :line_qtys, :status, :confirmation_status, :task)"
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


async def place_order(
    conn: AsyncConnection,
    *,
    user_id: int,
    lines: Sequence[OrderLine],
    idempotency: IdempotencyClaim | None = None,
) -> Placed | StoredResponse:
    """Claim ``idempotency``'s key (if given), place the order and store its answer, all
    or nothing, in one statement: on a connection in autocommit mode it commits as it
    returns (no BEGIN, no COMMIT round trip).

    Returns the stored answer instead when the key was used before (a concurrent request
    with it is waited for). Raises ``UnknownReference``, ``InsufficientStock`` or
    ``IdempotencyKeyReused`` having written nothing. The confirmation email is an outbox
    row of the same statement; once it is committed, ``Placed.stale`` are the cache tags
    it made stale (the user's order list, every product whose stock moved).
    """
    wanted = Counter[int]()
    for line in lines:
        wanted[line.product_id] += line.quantity
    product_ids = sorted(wanted)
    row = (
        await conn.execute(
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
        if row.request_fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used for a request with a different body."
            )
        # Stored with the key by the call that placed the order: a committed key always
        # has its answer.
        assert row.response_status is not None
        assert row.response_body is not None
        return StoredResponse(status=row.response_status, body=row.response_body)
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
    return Placed(
        body=row.body,
        stale=(cache_tags.user_orders(user_id), *map(cache_tags.product, product_ids)),
    )
