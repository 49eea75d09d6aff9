"""The confirmation task's logic called directly (no Celery), against real Postgres and
the real SMTP server: the idempotency guard and the outbox bookkeeping."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy import Engine

from services.core.db import create_sync_engine
from services.core.settings import Settings
from services.worker import confirmations
from services.worker.confirmations import Item
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


async def placed_orders(shop: RunningApi, db: asyncpg.Connection, count: int) -> list[Item]:
    user = await create_user(shop.client, "hedy@example.com")
    product = await create_product(shop.client, price_cents=700)
    items = []
    for _ in range(count):
        order = (await place_order(shop.client, user["id"], [(product["id"], 1)])).json()
        outbox_id = await db.fetchval(
            "SELECT id FROM outbox WHERE payload->>'order_id' = $1", str(order["id"])
        )
        items.append(Item(outbox_id, order["id"]))
    return items


def with_lease(settings: Settings, lease_s: int) -> Settings:
    return settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"claim_lease_s": lease_s})}
    )


@pytest.mark.usefixtures("clean")
async def test_a_batch_sends_each_email_once_over_one_session(
    shop: RunningApi,
    db: asyncpg.Connection,
    engine: Engine,
    worker_settings: Settings,
    smtp_server: SmtpServer,
) -> None:
    items = await placed_orders(shop, db, 3)

    first = confirmations.send_batch(engine, worker_settings, items, token="a")
    again = confirmations.send_batch(engine, worker_settings, items, token="b")

    user_id = await db.fetchval("SELECT user_id FROM orders LIMIT 1")
    assert (first.sent, first.already_sent, first.again, first.failed) == (3, 0, [], [])
    assert first.stale_users == {user_id}
    assert (again.sent, again.already_sent, again.again) == (0, 3, [])
    accepted = smtp_server.handler.accepted()
    assert sorted(m["Message-ID"] for m in accepted) == sorted(
        f"<order-{item.order_id}.confirmation@stampede.dev>" for item in items
    )
    assert len(set(smtp_server.handler.peers)) == 1  # one SMTP session for the batch
    rows = await db.fetch("SELECT attempts, claimed_by, sent_at FROM email_deliveries")
    assert [(r["attempts"], r["claimed_by"]) for r in rows] == [(1, "a")] * 3
    assert all(r["sent_at"] is not None for r in rows)
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM orders WHERE confirmation_status = 'sent'") == 3


@pytest.mark.usefixtures("clean")
async def test_a_batch_sets_aside_what_it_cannot_send_now(
    shop: RunningApi,
    db: asyncpg.Connection,
    engine: Engine,
    worker_settings: Settings,
    smtp_server: SmtpServer,
) -> None:
    leased, free = await placed_orders(shop, db, 2)
    vanished = Item(outbox_id=free.outbox_id + 100, order_id=987654)
    with engine.begin() as conn:
        confirmations.claim(
            conn,
            message_id=f"<order-{leased.order_id}.confirmation@stampede.dev>",
            order_id=leased.order_id,
            token="other",
            lease_s=8,
        )

    batch = confirmations.send_batch(engine, worker_settings, [leased, free, vanished], token="a")

    assert batch.sent == 1
    assert batch.again == [leased]
    assert 0 < batch.lease_busy_s <= 8
    [(item, user_id, error)] = batch.failed
    assert (item, user_id) == (vanished, None)
    assert isinstance(error, OrderVanished)
    [message] = smtp_server.handler.accepted()
    assert message["Message-ID"] == f"<order-{free.order_id}.confirmation@stampede.dev>"


@pytest.mark.usefixtures("clean")
async def test_a_batch_hit_by_a_database_error_records_the_accepted_email_and_sends_the_rest(
    shop: RunningApi,
    db: asyncpg.Connection,
    engine: Engine,
    worker_settings: Settings,
    smtp_server: SmtpServer,
    postgres_server: DatabaseEndpoint,
) -> None:
    settings = with_lease(worker_settings, 1)  # the unsent ones' leases may stay behind
    items = await placed_orders(shop, db, 3)
    admin = postgres_server.admin
    assert admin is not None
    revoke = f"REVOKE UPDATE ON email_deliveries FROM {APP_USER}"
    smtp_server.handler.on_accept = lambda: admin.psql(revoke, database=APP_DB)
    try:
        first = confirmations.send_batch(engine, settings, items, token="a")
    finally:
        smtp_server.handler.on_accept = None
        admin.psql(f"GRANT UPDATE ON email_deliveries TO {APP_USER}", database=APP_DB)

    # The first email is out: it comes back to be recorded only; the others unsent.
    assert first.sent == 0
    assert first.error is not None
    [accepted, *unsent] = first.again
    assert (accepted.order_id, accepted.accepted_by) == (items[0].order_id, "a")
    assert unsent == items[1:]
    assert len(smtp_server.handler.accepted()) == 1

    await asyncio.sleep(1.2)  # any lease left behind runs out
    second = confirmations.send_batch(engine, settings, first.again, token="b")

    assert (second.sent, second.again, second.failed) == (3, [], [])
    assert sorted(m["Message-ID"] for m in smtp_server.handler.accepted()) == sorted(
        f"<order-{item.order_id}.confirmation@stampede.dev>" for item in items
    )
    assert await db.fetchval("SELECT count(*) FROM orders WHERE confirmation_status = 'sent'") == 3
    assert await db.fetchval("SELECT max(attempts) FROM email_deliveries") == 2


@pytest.mark.usefixtures("clean")
async def test_a_slow_batch_leaves_the_rest_for_another_task_well_before_its_time_limit(
    shop: RunningApi,
    db: asyncpg.Connection,
    engine: Engine,
    worker_settings: Settings,
    smtp_server: SmtpServer,
) -> None:
    settings = worker_settings.model_copy(
        update={"worker": worker_settings.worker.model_copy(update={"soft_time_limit_s": 1})}
    )
    items = await placed_orders(shop, db, 3)
    # Each answer takes 0.4 s: past a third of the limit after the first email.
    smtp_server.handler.on_accept = lambda: time.sleep(0.4)

    first = confirmations.send_batch(engine, settings, items, token="a")

    assert (first.sent, first.again, first.error) == (1, [], None)
    assert first.rest == items[1:]
    # Their leases are free: the next task sends them at once.
    second = confirmations.send_batch(engine, settings, first.rest, token="b")
    assert second.sent == 1
    assert second.rest == items[2:]
    assert [m["Message-ID"] for m in smtp_server.handler.accepted()] == [
        f"<order-{item.order_id}.confirmation@stampede.dev>" for item in items[:2]
    ]
    # Claimed by both: the first released it unsent.
    assert await db.fetchval("SELECT max(attempts) FROM email_deliveries") == 2
