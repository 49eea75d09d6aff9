"""Send an order's confirmation email at most once per successful SMTP hand-off.

Delivery to the task is at least once (outbox + acks_late + redelivery), so the task
itself must make repeats harmless. It claims the email in Postgres before talking to
SMTP, and records success right after:

1. claim (one transaction): insert or take over the ``email_deliveries`` row with a
   lease, unless the email was already sent (→ nothing to do) or another attempt's lease
   still runs (→ retry when it ends);
2. send over SMTP with a Message-ID derived from the order;
3. record (one statement): ``sent_at``, the order's ``confirmation_status = 'sent'``,
   the outbox row done.

A redelivery after a crash in step 2 finds the lease, waits for it to expire and sends:
the crashed attempt never got the server's acceptance, so this is the first email.

Once the server accepted the message, the attempt knows it and never sends again: if
step 3 fails (any database error: unreachable however long, a COMMIT cut short; the
attempt runs out of time),
it raises ``AcceptedNotRecorded`` and the task retries the recording alone
(:func:`record_accepted`) until the database is back. The one window left is a crash of
the worker process between the server's acceptance and the moment that retry is handed
to the broker (or the broker refusing it then): the message is then redelivered as a
fresh attempt, which sends again once the lease expires. SMTP offers no transactional
hand-off to close it; the duplicate carries the same Message-ID.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Connection, Engine, Label, bindparam, func, select, true, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped
from sqlalchemy.sql.dml import ReturningUpdate

from services.core.models import (
    ConfirmationStatus,
    EmailDelivery,
    Order,
    OrderItem,
    Product,
    User,
)
from services.core.settings import Settings
from services.worker import mail, outbox_lifecycle
from services.worker.errors import AcceptedNotRecorded, LeaseBusy, OrderVanished

log = logging.getLogger(__name__)

Outcome = Literal["sent", "already-sent"]

# Quick retries of the final bookkeeping within the attempt, for a blip; a longer outage
# is handed to the task's retries (AcceptedNotRecorded). Seconds before each further try.
RECORD_RETRY_DELAYS_S = (0.2, 0.5)


@dataclass(frozen=True, slots=True)
class Claimed:
    attempt: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the attempt did, and whose cached order list it made stale (None: the order
    is gone)."""

    outcome: Outcome
    user_id: int | None


def _in_item_order(column: Mapped[Any], name: str) -> Label[Any]:
    return func.array_agg(aggregate_order_by(column, OrderItem.id)).label(name)


_LINES = (
    select(
        _in_item_order(Product.name, "names"),
        _in_item_order(OrderItem.quantity, "quantities"),
        _in_item_order(OrderItem.unit_price_cents, "unit_prices_cents"),
    )
    .join(Product, Product.id == OrderItem.product_id)
    .where(OrderItem.order_id == Order.id)
    .lateral("lines")
)
# The order, its recipient and its lines in one statement (lines as arrays in item order).
# Built once: SQLAlchemy then finds its compiled form by a cache key memoized on it.
_CONFIRMATION = (
    select(
        Order.id,
        Order.total_cents,
        Order.created_at,
        User.email,
        User.name,
        *_LINES.c,
    )
    .join(User, User.id == Order.user_id)
    .join(_LINES, true())
    .where(Order.id == bindparam("order_id"))
)


def load(conn: Connection, order_id: int) -> mail.Confirmation:
    order = conn.execute(_CONFIRMATION, {"order_id": order_id}).one_or_none()
    if order is None:
        raise OrderVanished(order_id)
    return mail.Confirmation(
        order_id=order.id,
        recipient_email=order.email,
        recipient_name=order.name,
        placed_at=order.created_at,
        total_cents=order.total_cents,
        lines=tuple(
            mail.Line(name, quantity, price)
            for name, quantity, price in zip(
                order.names or (),
                order.quantities or (),
                order.unit_prices_cents or (),
                strict=True,
            )
        ),
    )


def claim(
    conn: Connection, *, message_id: str, order_id: int, token: str, lease_s: int
) -> Claimed | None:
    """Take the email's lease for ``token``; None if it was already sent.

    Raises ``LeaseBusy`` while another attempt's lease runs. One statement: the row lock
    of the upsert serialises concurrent attempts, so exactly one of them wins.
    """
    lease_until = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)
    table = EmailDelivery.__table__
    won = conn.execute(
        insert(EmailDelivery)
        .values(
            message_id=message_id,
            order_id=order_id,
            attempts=1,
            claimed_by=token,
            lease_until=lease_until,
        )
        .on_conflict_do_update(
            index_elements=[EmailDelivery.message_id],
            set_={
                "attempts": table.c.attempts + 1,
                "claimed_by": token,
                "lease_until": lease_until,
            },
            where=(table.c.sent_at.is_(None))
            & (table.c.lease_until.is_(None) | (table.c.lease_until <= func.now())),
        )
        .returning(EmailDelivery.attempts)
    ).scalar_one_or_none()
    if won is not None:
        return Claimed(attempt=won)
    current = conn.execute(
        select(
            EmailDelivery.sent_at,
            func.extract("epoch", EmailDelivery.lease_until - func.now()).label("left"),
        ).where(EmailDelivery.message_id == message_id)
    ).one()
    if current.sent_at is not None:
        return None
    raise LeaseBusy(message_id, max(float(current.left or 0), 0.0))


def release(conn: Connection, *, message_id: str, token: str) -> None:
    conn.execute(
        update(EmailDelivery)
        .where(EmailDelivery.message_id == message_id, EmailDelivery.claimed_by == token)
        .values(lease_until=None)
    )


def record_sent(
    conn: Connection, *, message_id: str, order_id: int, outbox_id: int, token: str
) -> int | None:
    """Record the email as sent, the order as confirmed and the outbox row as done, in one
    statement (one round trip instead of three); returns the order's user id (None if the
    order is gone), whose cached order list is stale now."""
    delivery = (
        update(EmailDelivery)
        .where(EmailDelivery.message_id == message_id)
        .values(sent_at=func.coalesce(EmailDelivery.sent_at, func.now()), lease_until=None)
        .returning(EmailDelivery.claimed_by)
        .cte("delivery")
    )
    confirmed = _confirm(order_id).cte("confirmed")
    done = outbox_lifecycle.done_update(outbox_id).cte("done")
    row = conn.execute(
        select(delivery.c.claimed_by, select(confirmed.c.user_id).scalar_subquery()).add_cte(done)
    ).one()
    claimed_by, user_id = row
    if claimed_by != token:
        # Our lease expired mid-send (an attempt outlived time_limit < claim_lease?): the
        # other attempt may send too. Loud, because the settings check should prevent it.
        log.error("email %s: lease lost to %s while sending", message_id, claimed_by)
    return cast(int | None, user_id)


def _confirm(order_id: int) -> ReturningUpdate[int]:
    return (
        update(Order)
        .where(Order.id == order_id)
        .values(confirmation_status=ConfirmationStatus.SENT)
        .returning(Order.user_id)
    )


def send_order_confirmation(
    engine: Engine, settings: Settings, *, outbox_id: int, order_id: int, token: str
) -> Delivery:
    """Send order ``order_id``'s confirmation unless it was sent already.

    ``token`` names this attempt (unique per attempt). Raises ``OrderVanished``,
    ``LeaseBusy``, SMTP and database errors; the caller decides about retries.
    """
    msg_id = mail.message_id(order_id, settings.smtp.message_id_domain)
    with engine.begin() as conn:
        confirmation = load(conn, order_id)
        claimed = claim(
            conn,
            message_id=msg_id,
            order_id=order_id,
            token=token,
            lease_s=settings.worker.claim_lease_s,
        )
        if claimed is None:
            # A redelivery or a second publish: make sure the bookkeeping says so too.
            done = outbox_lifecycle.done_update(outbox_id).cte("done")
            confirmed = _confirm(order_id).cte("confirmed")
            user_id = conn.scalar(select(confirmed.c.user_id).add_cte(done))
            return Delivery("already-sent", user_id)
    message = mail.compose(confirmation, sender=settings.smtp.sender, msg_id=msg_id)
    try:
        mail.send(message, settings.smtp, settings.smtp_host)
    except Exception:
        # The server did not accept it, so the next attempt need not wait for the lease.
        # (Best effort: if this fails too, the lease simply runs out.)
        with contextlib.suppress(SQLAlchemyError), engine.begin() as conn:
            release(conn, message_id=msg_id, token=token)
        raise
    try:
        for delay in (*RECORD_RETRY_DELAYS_S, None):
            try:
                user_id = record_accepted(
                    engine, settings, outbox_id=outbox_id, order_id=order_id, token=token
                )
                break
            except SQLAlchemyError:
                if delay is None:
                    raise
                log.warning("email %s sent; recording it failed, retrying", msg_id, exc_info=True)
                time.sleep(delay)
    except (SQLAlchemyError, SoftTimeLimitExceeded) as error:
        # Whatever the database answered — an outage, or an error as odd as a COMMIT
        # cut short by a server shutting down — the email is out: only the record may
        # be tried again, never the send.
        raise AcceptedNotRecorded(msg_id, token) from error
    log.info("email %s sent (attempt %d)", msg_id, claimed.attempt)
    return Delivery("sent", user_id)


def record_accepted(
    engine: Engine, settings: Settings, *, outbox_id: int, order_id: int, token: str
) -> int | None:
    """Record that the SMTP server accepted order ``order_id``'s confirmation under
    ``token``'s attempt; returns the order's user id (None if the order is gone). Raises
    database errors; never sends."""
    msg_id = mail.message_id(order_id, settings.smtp.message_id_domain)
    with engine.begin() as conn:
        return record_sent(
            conn, message_id=msg_id, order_id=order_id, outbox_id=outbox_id, token=token
        )
