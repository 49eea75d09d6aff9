"""The confirmation task's logic called directly (no Celery), against real Postgres and
the real SMTP server: the idempotency guard and the outbox bookkeeping."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import Engine

from services.core.db import create_sync_engine
from services.core.settings import Settings
from services.worker import confirmations
from services.worker.errors import (
    AcceptedNotRecorded,
    LeaseBusy,
    OrderVanished,
    is_permanent_smtp_error,
)
from tests.support.api import RunningApi
from tests.support.endpoints import APP_DB, APP_USER, DatabaseEndpoint
from tests.support.factories import create_product, create_user, place_order
from tests.support.smtp import SmtpServer


@pytest.fixture(scope="module")
def engine(worker_settings: Settings) -> Iterator[Engine]:
    engine = create_sync_engine(worker_settings.database_url, worker_settings.db, pool_size=2)
    yield engine
    engine.dispose()


async def placed_order(shop: RunningApi, db: asyncpg.Connection) -> tuple[int, int]:
    user = await create_user(shop.client, "grace@example.com")
    product = await create_product(shop.client, price_cents=500)
    order = (await place_order(shop.client, user["id"], [(product["id"], 3)])).json()
    outbox_id = await db.fetchval(
        "SELECT id FROM outbox WHERE payload->>'order_id' = $1", str(order["id"])
    )
    return order["id"], outbox_id


@pytest.mark.usefixtures("clean")
async def test_order_and_its_outbox_row_commit_together(
    shop: RunningApi, db: asyncpg.Connection
) -> None:
    user = await create_user(shop.client, "grace@example.com")
    product = await create_product(shop.client, stock=1)
    ok = await place_order(shop.client, user["id"], [(product["id"], 1)])
    refused = await place_order(shop.client, user["id"], [(product["id"], 1)])  # out of stock
    assert (ok.status_code, refused.status_code) == (201, 409)
    rows = await db.fetch("SELECT task, payload, published_at FROM outbox")
    assert [(r["task"], r["payload"], r["published_at"]) for r in rows] == [
        ("stampede.orders.send_confirmation", f'{{"order_id": {ok.json()["id"]}}}', None)
    ]


@pytest.mark.usefixtures("clean")
async def test_second_call_sends_nothing(
    shop: RunningApi,
    db: asyncpg.Connection,
    engine: Engine,
    worker_settings: Settings,
    smtp_server: SmtpServer,
) -> None:
    order_id, outbox_id = await placed_order(shop, db)
    args = {"outbox_id": outbox_id, "order_id": order_id}

    first = confirmations.send_order_confirmation(engine, worker_settings, token="a", **args)
    again = confirmations.send_order_confirmation(engine, worker_settings, token="b", **args)

    user_id = await db.fetchval("SELECT user_id FROM orders WHERE id = $1", order_id)
    assert (first, again) == (
        confirmations.Delivery("sent", user_id),
        confirmations.Delivery("already-sent", user_id),
    )
    assert len(smtp_server.handler.accepted()) == 1
    row = await db.fetchrow("SELECT attempts, claimed_by, sent_at FROM email_deliveries")
    assert row is not None
    assert (row["attempts"], row["claimed_by"]) == (1, "a")
    assert row["sent_at"] is not None
    assert await db.fetchval("SELECT done_at FROM outbox") is not None
    status = await db.fetchval("SELECT confirmation_status FROM orders")
    assert status == "sent"


@pytest.mark.usefixtures("clean")
async def test_a_running_attempt_holds_off_a_second_one(
    shop: RunningApi, db: asyncpg.Connection, engine: Engine, worker_settings: Settings
) -> None:
    order_id, _ = await placed_order(shop, db)
    msg_id = f"<order-{order_id}.confirmation@stampede.dev>"
    with engine.begin() as conn:
        claimed = confirmations.claim(
            conn, message_id=msg_id, order_id=order_id, token="first", lease_s=8
        )
    assert claimed == confirmations.Claimed(attempt=1)
    with pytest.raises(LeaseBusy) as busy, engine.begin() as conn:
        confirmations.claim(conn, message_id=msg_id, order_id=order_id, token="second", lease_s=8)
    assert 0 < busy.value.retry_in_s <= 8
    # A failed send releases the lease: the next attempt may go at once.
    with engine.begin() as conn:
        confirmations.release(conn, message_id=msg_id, token="first")
        again = confirmations.claim(
            conn, message_id=msg_id, order_id=order_id, token="second", lease_s=8
        )
    assert again == confirmations.Claimed(attempt=2)


@pytest.mark.usefixtures("clean")
def test_vanished_order_is_permanent(engine: Engine, worker_settings: Settings) -> None:
    with pytest.raises(OrderVanished):
        confirmations.send_order_confirmation(
            engine, worker_settings, outbox_id=1, order_id=987654, token="x"
        )


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (smtplib.SMTPDataError(451, b"try later"), False),
        (smtplib.SMTPDataError(554, b"rejected"), True),
        (smtplib.SMTPSenderRefused(421, b"busy", "a@b"), False),
        (smtplib.SMTPRecipientsRefused({"a@b": (550, b"no such user")}), True),
        (smtplib.SMTPRecipientsRefused({"a@b": (450, b"greylisted")}), False),
        (smtplib.SMTPServerDisconnected("gone"), False),
    ],
)
def test_only_5xx_replies_are_permanent(error: smtplib.SMTPException, permanent: bool) -> None:
    assert is_permanent_smtp_error(error) is permanent


@pytest.mark.usefixtures("clean")
async def test_any_database_error_after_acceptance_retries_the_record_never_the_send(
    shop: RunningApi,
    db: asyncpg.Connection,
    engine: Engine,
    worker_settings: Settings,
    smtp_server: SmtpServer,
    postgres_server: DatabaseEndpoint,
) -> None:
    # Not an outage but a statement error (seen in a drill: a COMMIT cut short by a
    # Postgres shutting down): the email is out all the same.
    order_id, outbox_id = await placed_order(shop, db)
    args = {"outbox_id": outbox_id, "order_id": order_id}
    admin = postgres_server.admin
    assert admin is not None
    revoke = f"REVOKE UPDATE ON email_deliveries FROM {APP_USER}"
    smtp_server.handler.on_accept = lambda: admin.psql(revoke, database=APP_DB)
    try:
        with pytest.raises(AcceptedNotRecorded) as accepted:
            confirmations.send_order_confirmation(engine, worker_settings, token="a", **args)
    finally:
        admin.psql(f"GRANT UPDATE ON email_deliveries TO {APP_USER}", database=APP_DB)

    confirmations.record_accepted(engine, worker_settings, token=accepted.value.token, **args)
    again = confirmations.send_order_confirmation(engine, worker_settings, token="b", **args)
    assert again.outcome == "already-sent"
    assert len(smtp_server.handler.accepted()) == 1
    assert await db.fetchval("SELECT confirmation_status FROM orders") == "sent"
