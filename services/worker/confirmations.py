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
import smtplib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    Label,
    String,
    any_,
    bindparam,
    func,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, insert
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
from services.worker.errors import (
    AcceptedNotRecorded,
    LeaseBusy,
    MailRejected,
    OrderVanished,
    PermanentError,
    is_permanent_smtp_error,
)

log = logging.getLogger(__name__)

Outcome = Literal["sent", "already-sent"]

# Quick retries of the final bookkeeping within the attempt, for a blip; a longer outage
# is handed to the task's retries (AcceptedNotRecorded). Seconds before each further try.
RECORD_RETRY_DELAYS_S = (0.2, 0.5)

# A batch starts no send after this share of the soft time limit, and no quick retry of a
# record after that one: a batch must end well before the limit, which would cut it
# between an email's acceptance and its record (the hard limit: kill, ack, and a resend
# once the sweep publishes it again).
SEND_SHARE_OF_LIMIT = 1 / 3
RECORD_SHARE_OF_LIMIT = 2 / 3


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
    return _confirmation(order)


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


# The record of a sent email: the delivery, the order's status, the outbox row, in one
# statement. SQL text built once: the worker runs it for every email, and a Core
# construct built per call paid for its cache key (and, often, a compile) every time.
_RECORD_SENT = text(
    """
WITH delivery AS (
    UPDATE email_deliveries
    SET sent_at = coalesce(sent_at, now()), lease_until = NULL
    WHERE message_id = :message_id
    RETURNING claimed_by
), confirmed AS (
    UPDATE orders SET confirmation_status = 'sent' WHERE id = :order_id
    RETURNING user_id
), done AS (
    UPDATE outbox SET done_at = now(), dead_at = NULL
    WHERE id = :outbox_id AND done_at IS NULL
)
SELECT (SELECT claimed_by FROM delivery) AS claimed_by,
    (SELECT user_id FROM confirmed) AS user_id
"""
).bindparams(
    bindparam("message_id", type_=String),
    bindparam("order_id", type_=BigInteger),
    bindparam("outbox_id", type_=BigInteger),
)


def record_sent(
    conn: Connection, *, message_id: str, order_id: int, outbox_id: int, token: str
) -> int | None:
    """Record the email as sent, the order as confirmed and the outbox row as done, in one
    statement (one round trip instead of three); returns the order's user id (None if the
    order is gone), whose cached order list is stale now."""
    row = conn.execute(
        _RECORD_SENT, {"message_id": message_id, "order_id": order_id, "outbox_id": outbox_id}
    ).one()
    if row.claimed_by != token:
        # Our lease expired mid-send (an attempt outlived time_limit < claim_lease?): the
        # other attempt may send too. Loud, because the settings check should prevent it.
        log.error("email %s: lease lost to %s while sending", message_id, row.claimed_by)
    return cast(int | None, row.user_id)


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
    # One statement, atomic on its own: no BEGIN and COMMIT around it, two round trips
    # fewer per email (through PgBouncer, four messages fewer).
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        return record_sent(
            conn, message_id=msg_id, order_id=order_id, outbox_id=outbox_id, token=token
        )


# A batch: several confirmations in one task, over one SMTP session. ----------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One confirmation of a batch task (its message carries them as lists)."""

    outbox_id: int
    order_id: int
    # The attempt whose email the SMTP server accepted already: only record it.
    accepted_by: str | None = None

    @classmethod
    def from_message(cls, value: Sequence[Any]) -> Item:
        outbox_id, order_id, *rest = value
        return cls(int(outbox_id), int(order_id), str(rest[0]) if rest and rest[0] else None)

    def to_message(self) -> list[Any]:
        if self.accepted_by is None:
            return [self.outbox_id, self.order_id]
        return [self.outbox_id, self.order_id, self.accepted_by]


@dataclass(slots=True)
class Batch:
    """What a batch attempt did, and what is left for the task to arrange."""

    sent: int = 0
    already_sent: int = 0
    # Users whose cached order list is stale now (an order's status moved).
    stale_users: set[int] = field(default_factory=set)
    # Failed for good (order vanished, SMTP 5xx): to dead-letter, with their user if known.
    failed: list[tuple[Item, int | None, PermanentError]] = field(default_factory=list)
    # To try again: sends not made (no lease of ours left on them), and accepted emails
    # whose record failed (``accepted_by`` set: record only, never send).
    again: list[Item] = field(default_factory=list)
    # Not tried for lack of time (their leases released): the rest of the batch, to go
    # on with in a task of its own; not a failure.
    rest: list[Item] = field(default_factory=list)
    # Another attempt holds some of ``again``'s leases for this long at most.
    lease_busy_s: float = 0.0
    # What stopped the sending (an SMTP or network error, a database error, the soft
    # time limit), if something did.
    error: Exception | None = None


_CONFIRMATIONS = (
    select(
        Order.id,
        Order.user_id,
        Order.total_cents,
        Order.created_at,
        User.email,
        User.name,
        *_LINES.c,
    )
    .join(User, User.id == Order.user_id)
    .join(_LINES, true())
    .where(Order.id == any_(bindparam("order_ids", type_=ARRAY(BigInteger))))
)

# Claims every email of the batch in one statement, in message-id order (two batches
# with the same emails, a redelivery beside a republish, lock them in the same order).
# Returned: the emails this attempt won; the others were sent or are leased elsewhere.
_CLAIM_MANY = text(
    """
INSERT INTO email_deliveries AS d (message_id, order_id, attempts, claimed_by, lease_until)
SELECT c.message_id, c.order_id, 1, :token, now() + make_interval(secs => :lease_s)
FROM unnest(CAST(:message_ids AS text[]), CAST(:order_ids AS bigint[]))
    AS c (message_id, order_id)
ORDER BY c.message_id
ON CONFLICT (message_id) DO UPDATE
    SET attempts = d.attempts + 1, claimed_by = EXCLUDED.claimed_by,
        lease_until = EXCLUDED.lease_until
    WHERE d.sent_at IS NULL AND (d.lease_until IS NULL OR d.lease_until <= now())
RETURNING d.message_id, d.attempts
"""
).bindparams(
    bindparam("token", type_=String),
    bindparam("lease_s", type_=Integer),
    bindparam("message_ids", type_=ARRAY(String)),
    bindparam("order_ids", type_=ARRAY(BigInteger)),
)

_NOT_WON = text(
    "SELECT message_id, sent_at IS NOT NULL AS sent,"
    " greatest(extract(epoch FROM lease_until - now()), 0) AS left_s"
    " FROM email_deliveries WHERE message_id = ANY (CAST(:message_ids AS text[]))"
).bindparams(bindparam("message_ids", type_=ARRAY(String)))

_RELEASE_MANY = text(
    "UPDATE email_deliveries SET lease_until = NULL"
    " WHERE message_id = ANY (CAST(:message_ids AS text[])) AND claimed_by = :token"
).bindparams(bindparam("message_ids", type_=ARRAY(String)), bindparam("token", type_=String))

# The bookkeeping of emails found sent already (a redelivery, a second publish).
_ALREADY_SENT = text(
    """
WITH done AS (
    UPDATE outbox SET done_at = now(), dead_at = NULL
    WHERE id = ANY (CAST(:outbox_ids AS bigint[])) AND done_at IS NULL
), confirmed AS (
    UPDATE orders SET confirmation_status = 'sent'
    WHERE id = ANY (CAST(:order_ids AS bigint[]))
    RETURNING user_id
)
SELECT user_id FROM confirmed
"""
).bindparams(
    bindparam("outbox_ids", type_=ARRAY(BigInteger)),
    bindparam("order_ids", type_=ARRAY(BigInteger)),
)


@dataclass(frozen=True, slots=True)
class _Claim:
    item: Item
    message_id: str
    confirmation: mail.Confirmation
    user_id: int
    attempt: int


def _claim_batch(
    engine: Engine, settings: Settings, items: Sequence[Item], token: str, batch: Batch
) -> list[_Claim]:
    """Load every order and claim every email in one transaction; what this attempt
    won, in message-id order. Vanished orders go to ``batch.failed``, emails sent
    already are booked as such, emails leased elsewhere go to ``batch.again``."""
    domain = settings.smtp.message_id_domain
    by_message = {mail.message_id(item.order_id, domain): item for item in items}
    with engine.begin() as conn:
        found = {
            row.id: row
            for row in conn.execute(
                _CONFIRMATIONS, {"order_ids": [item.order_id for item in items]}
            )
        }
        for msg_id, item in list(by_message.items()):
            if item.order_id not in found:
                batch.failed.append((item, None, OrderVanished(item.order_id)))
                del by_message[msg_id]
        if not by_message:
            return []
        message_ids = sorted(by_message)
        won: dict[str, int] = {
            row.message_id: row.attempts
            for row in conn.execute(
                _CLAIM_MANY,
                {
                    "token": token,
                    "lease_s": settings.worker.claim_lease_s,
                    "message_ids": message_ids,
                    "order_ids": [by_message[m].order_id for m in message_ids],
                },
            )
        }
        lost = [m for m in message_ids if m not in won]
        sent_already: list[Item] = []
        if lost:
            for row in conn.execute(_NOT_WON, {"message_ids": lost}):
                if row.sent:
                    sent_already.append(by_message[row.message_id])
                else:
                    batch.again.append(by_message[row.message_id])
                    batch.lease_busy_s = max(batch.lease_busy_s, float(row.left_s))
        if sent_already:
            batch.already_sent += len(sent_already)
            batch.stale_users.update(
                conn.scalars(
                    _ALREADY_SENT,
                    {
                        "outbox_ids": [item.outbox_id for item in sent_already],
                        "order_ids": [item.order_id for item in sent_already],
                    },
                )
            )
    return [
        _Claim(
            item=by_message[m],
            message_id=m,
            confirmation=_confirmation(found[by_message[m].order_id]),
            user_id=found[by_message[m].order_id].user_id,
            attempt=won[m],
        )
        for m in message_ids
        if m in won
    ]


def _confirmation(order: Any) -> mail.Confirmation:
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


def _release_many(engine: Engine, claims: Sequence[_Claim], token: str) -> None:
    """Best effort: the server accepted none of ``claims``, so their next attempt need
    not wait for the lease (if this fails too, the leases simply run out)."""
    if claims:
        with contextlib.suppress(SQLAlchemyError), engine.begin() as conn:
            conn.execute(
                _RELEASE_MANY, {"message_ids": [c.message_id for c in claims], "token": token}
            )


def send_batch(engine: Engine, settings: Settings, items: Sequence[Item], *, token: str) -> Batch:
    """Send the confirmations of ``items`` over one SMTP session, each at most once.

    The same guard as :func:`send_order_confirmation`, per email: every email is claimed
    (one statement for the batch) before the session opens, and each is recorded as
    sent right after the server's ``250`` to it, before the next is sent. Items with
    ``accepted_by`` are only recorded. Raises only what comes before any email is sent
    (database errors while loading and claiming: the task retries the whole batch);
    from the first send on, every outcome is in the returned ``Batch``.
    """
    batch = Batch()
    started = time.monotonic()
    limit_s = settings.worker.soft_time_limit_s
    send_until = started + limit_s * SEND_SHARE_OF_LIMIT
    record_until = started + limit_s * RECORD_SHARE_OF_LIMIT
    for item in items:
        if item.accepted_by is not None:
            try:
                user_id = record_accepted(
                    engine,
                    settings,
                    outbox_id=item.outbox_id,
                    order_id=item.order_id,
                    token=item.accepted_by,
                )
            except (SQLAlchemyError, SoftTimeLimitExceeded) as error:
                batch.again.append(item)
                batch.error = error
                continue
            batch.sent += 1
            if user_id is not None:
                batch.stale_users.add(user_id)
    to_send = [item for item in items if item.accepted_by is None]
    if not to_send or batch.error is not None:
        # The database is failing us: the sends wait for the record-only retry's luck.
        batch.again.extend(to_send)
        return batch
    claims = _claim_batch(engine, settings, to_send, token, batch)
    smtp: smtplib.SMTP | None = None
    try:
        for index, claim in enumerate(claims):
            if index and time.monotonic() > send_until:
                # A slow server or a busy machine: what is left goes on in a task of
                # its own rather than run into the time limit with an email accepted
                # and not recorded.
                batch.rest.extend(c.item for c in claims[index:])
                _release_many(engine, claims[index:], token)
                break
            message = mail.compose(
                claim.confirmation, sender=settings.smtp.sender, msg_id=claim.message_id
            )
            try:
                if smtp is None:
                    smtp = mail.connect(settings.smtp, settings.smtp_host)
                mail.deliver(smtp, message)
            except smtplib.SMTPException as error:
                if is_permanent_smtp_error(error):
                    # This message will never be accepted; the session goes on.
                    batch.failed.append((claim.item, claim.user_id, MailRejected(str(error))))
                    _release_many(engine, [claim], token)
                    continue
                _stop(engine, batch, claims[index:], token, error)
                break
            except (OSError, SoftTimeLimitExceeded) as error:
                _stop(engine, batch, claims[index:], token, error)
                break
            try:
                _record_with_retries(engine, settings, claim, token, until=record_until)
            except (SQLAlchemyError, SoftTimeLimitExceeded) as error:
                # The email is out: only its record may be tried again, never the send.
                log.warning("email %s sent; recording it later", claim.message_id)
                batch.again.append(Item(claim.item.outbox_id, claim.item.order_id, token))
                _stop(engine, batch, claims[index + 1 :], token, error)
                break
            batch.sent += 1
            batch.stale_users.add(claim.user_id)
            log.info("email %s sent (attempt %d)", claim.message_id, claim.attempt)
    finally:
        if smtp is not None:
            mail.close(smtp)
    return batch


def _stop(
    engine: Engine, batch: Batch, unsent: Sequence[_Claim], token: str, error: Exception
) -> None:
    """The rest of the batch is not sent by this attempt: free its leases, try again."""
    batch.error = error
    batch.again.extend(claim.item for claim in unsent)
    _release_many(engine, unsent, token)


def _record_with_retries(
    engine: Engine, settings: Settings, claim: _Claim, token: str, *, until: float
) -> None:
    """Record ``claim``'s email as sent; a few quick tries, none of them begun after
    ``until`` (the time limit is near: the record-only retry takes over)."""
    for delay in (*RECORD_RETRY_DELAYS_S, None):
        try:
            record_accepted(
                engine,
                settings,
                outbox_id=claim.item.outbox_id,
                order_id=claim.item.order_id,
                token=token,
            )
            return
        except SQLAlchemyError:
            if delay is None or time.monotonic() + delay > until:
                raise
            log.warning(
                "email %s sent; recording it failed, retrying", claim.message_id, exc_info=True
            )
            time.sleep(delay)
