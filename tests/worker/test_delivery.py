"""End to end: api → outbox → relay → broker Redis → Celery worker → SMTP.

Every test runs the real processes (``celery worker`` with prefork children, the relay)
against a real broker Redis and a real SMTP server; no eager mode, no fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import asyncpg

from devstack.stack import REPO
from services.core.outbox import SEND_ORDER_CONFIRMATION
from tests.support.api import RunningApi
from tests.support.delivery import (
    emails,
    eventually,
    message_id,
    new_order,
    no_more_emails,
    status_becomes,
)
from tests.support.factories import create_product, create_user, place_order
from tests.support.processes import BrokerRedis, Process, Processes
from tests.support.smtp import SmtpServer


async def test_one_order_sends_exactly_one_email_with_its_lines_and_total(
    processes: Processes, shop: RunningApi, smtp_server: SmtpServer
) -> None:
    processes.worker()
    processes.relay()
    client = shop.client
    user = await create_user(client, "ada@example.com")
    lamp = await create_product(client, name="Desk Lamp", price_cents=1999, stock=5)
    bulb = await create_product(client, name="Bulb <LED>", price_cents=250, stock=50)

    response = await place_order(client, user["id"], [(lamp["id"], 2), (bulb["id"], 3)])

    assert response.status_code == 201
    order = response.json()
    assert order["confirmation_status"] == "pending"
    [message] = await emails(smtp_server, 1)
    assert message["Message-ID"] == message_id(order["id"])
    assert "ada@example.com" in message["To"]
    assert message["Subject"] == f"Your order #{order['id']}"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    plain, markup = text.get_content(), html.get_content()
    assert "2 x Desk Lamp" in plain
    assert "3 x Bulb <LED>" in plain
    assert "Total: 47.48" in plain  # 2 x 19.99 + 3 x 2.50
    assert "Bulb &lt;LED&gt;" in markup
    assert "47.48" in markup
    await status_becomes(client, order["id"], "sent")
    await no_more_emails(smtp_server, 1)


async def test_a_cached_order_list_shows_the_sent_status_at_once(
    processes: Processes, shop: RunningApi, smtp_server: SmtpServer
) -> None:
    """The worker's write invalidates the api's cached ``/users/{id}/orders`` (its TTL
    is a minute: without the invalidation the list would say "pending" that long)."""
    cache = shop.resources.response_cache
    assert cache is not None
    await shop.resources.cache_redis.flushdb()  # ids restart with every test
    cache.tiers.clear_local()
    processes.relay()
    order = await new_order(shop.client)
    orders_url = f"/users/{order['user_id']}/orders"

    async def listed_status() -> str:
        response = await shop.client.get(orders_url)
        return str(response.json()["items"][0]["confirmation_status"])

    assert await listed_status() == "pending"
    assert (await shop.client.get(orders_url)).headers["x-cache"] == "hit"

    processes.worker()
    await emails(smtp_server, 1)

    async def shows_sent() -> bool:
        return await listed_status() == "sent"

    await eventually(shows_sent, 3, "the cached order list shows the sent status")


async def test_worker_killed_while_sending_sends_exactly_one_email_after_restart(
    processes: Processes, shop: RunningApi, smtp_server: SmtpServer, db: asyncpg.Connection
) -> None:
    smtp_server.handler.stall = True
    worker = processes.worker()
    processes.relay()
    order = await new_order(shop.client)

    async def mid_send() -> bool:
        return smtp_server.handler.stalled.is_set()

    await eventually(mid_send, 20, "the worker is in the middle of DATA")
    worker.kill9()

    async def server_saw_client_go() -> bool:
        return smtp_server.handler.abandoned.is_set()

    # The connection died before the server answered DATA: nothing was accepted. (The
    # stall is never released: releasing it could race the server noticing the dead
    # client, and accept the message, which is the other window, not this test's.)
    await eventually(server_saw_client_go, 10, "the SMTP server noticed the dead client")
    smtp_server.handler.stall = False
    assert smtp_server.handler.accepted() == []

    processes.worker()
    # Redelivered once the broker's visibility timeout (10 s here) has passed.
    [message] = await emails(smtp_server, 1, within=45)
    assert message["Message-ID"] == message_id(int(str(order["id"])))
    await status_becomes(shop.client, int(str(order["id"])), "sent")
    attempts = await db.fetchval("SELECT attempts FROM email_deliveries")
    assert attempts == 2
    await no_more_emails(smtp_server, 1)


async def test_broker_down_when_ordering_still_201_and_email_follows(
    processes: Processes,
    shop: RunningApi,
    smtp_server: SmtpServer,
    broker: BrokerRedis,
    db: asyncpg.Connection,
) -> None:
    processes.worker()
    relay = processes.relay()
    broker.stop()

    order = await new_order(shop.client)  # 201: the api never talks to the broker

    async def relay_failing() -> bool:
        return "relay cycle failed" in relay.output()

    await eventually(relay_failing, 15, "the relay tries, fails and backs off (no hang)")
    assert await db.fetchval("SELECT published_at FROM outbox") is None
    assert smtp_server.handler.accepted() == []
    broker.start()
    [message] = await emails(smtp_server, 1, within=60)
    assert message["Message-ID"] == message_id(int(str(order["id"])))
    await status_becomes(shop.client, int(str(order["id"])), "sent")
    await no_more_emails(smtp_server, 1)


async def test_smtp_refusing_for_a_while_is_retried_then_sends_once(
    processes: Processes, shop: RunningApi, smtp_server: SmtpServer, db: asyncpg.Connection
) -> None:
    smtp_server.handler.refuse_next = 2
    processes.worker()
    processes.relay()
    order = await new_order(shop.client)

    [message] = await emails(smtp_server, 1)

    assert message["Message-ID"] == message_id(int(str(order["id"])))
    assert smtp_server.handler.refused == 2
    await status_becomes(shop.client, int(str(order["id"])), "sent")
    assert await db.fetchval("SELECT attempts FROM email_deliveries") == 3
    await no_more_emails(smtp_server, 1)


async def test_500_concurrent_orders_500_emails_no_duplicate_none_missing(
    processes: Processes, shop: RunningApi, smtp_server: SmtpServer, db: asyncpg.Connection
) -> None:
    processes.worker()
    # Two relays share the backlog: SKIP LOCKED keeps them from publishing a row twice.
    processes.relay()
    processes.relay()
    client = shop.client
    user = await create_user(client, "many@example.com")
    products = [await create_product(client, stock=1000) for _ in range(10)]

    responses = await asyncio.gather(
        *(place_order(client, user["id"], [(products[i % 10]["id"], 1)]) for i in range(500))
    )

    assert Counter(r.status_code for r in responses) == {201: 500}
    expected = {message_id(r.json()["id"]) for r in responses}
    received = await emails(smtp_server, 500, within=120)
    await no_more_emails(smtp_server, 500)
    ids = Counter(m["Message-ID"] for m in received)
    assert set(ids) == expected
    assert max(ids.values()) == 1
    assert (
        await db.fetchval("SELECT count(*) FROM orders WHERE confirmation_status = 'sent'") == 500
    )
    assert await db.fetchval("SELECT max(publish_count) FROM outbox") == 1
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL") == 500


async def test_poison_task_is_dead_lettered_not_retried_forever(
    processes: Processes, smtp_server: SmtpServer, db: asyncpg.Connection, broker: BrokerRedis
) -> None:
    worker = processes.worker()
    processes.relay()
    # An order that vanished between its commit and its email.
    outbox_id = await db.fetchval(
        "INSERT INTO outbox (task, payload) VALUES ($1, $2::jsonb) RETURNING id",
        SEND_ORDER_CONFIRMATION,
        json.dumps({"order_id": 424242}),
    )

    async def dead() -> bool:
        return await db.fetchval("SELECT dead_at FROM outbox WHERE id = $1", outbox_id) is not None

    await eventually(dead, 20, "the task is dead-lettered")
    await asyncio.sleep(1.5)
    row = await db.fetchrow("SELECT publish_count, last_error, done_at FROM outbox")
    assert row is not None
    assert row["publish_count"] == 1
    assert row["done_at"] is None
    assert "OrderVanished" in row["last_error"]
    assert worker.output().count("dead-lettered") == 1
    client = broker.client()
    assert client.llen("stampede") == 0
    assert client.hlen("unacked") == 0
    assert smtp_server.handler.accepted() == []


def deadletters(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "services.worker.deadletters", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


async def test_exhausted_retries_dead_letter_then_operator_retry_sends_once(
    processes: Processes,
    shop: RunningApi,
    smtp_server: SmtpServer,
    worker_env: dict[str, str],
) -> None:
    smtp_server.handler.refuse_next = 1000
    processes.worker()
    processes.relay()
    order = await new_order(shop.client)
    order_id = int(str(order["id"]))

    await status_becomes(shop.client, order_id, "failed")  # 1 try + 3 retries, all 451
    assert smtp_server.handler.refused == 4
    env = {**os.environ, **worker_env}
    [letter] = [json.loads(line) for line in deadletters(env, "list").splitlines()]
    assert letter["payload"] == {"order_id": order_id}
    assert "451" in letter["last_error"]

    smtp_server.handler.refuse_next = 0
    deadletters(env, "retry", str(letter["id"]))

    [message] = await emails(smtp_server, 1)
    assert message["Message-ID"] == message_id(order_id)
    await status_becomes(shop.client, order_id, "sent")
    assert deadletters(env, "list") == ""
    await no_more_emails(smtp_server, 1)


def pool_children(worker: Process) -> list[int]:
    """The pids of a Celery worker's prefork children (its main process's children)."""
    pid = worker.process.pid
    found: list[int] = []
    for thread in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{thread}/children") as children:
            found.extend(int(child) for child in children.read().split())
    return found


async def test_task_killed_by_its_hard_time_limit_is_dead_lettered(
    processes: Processes,
    shop: RunningApi,
    smtp_server: SmtpServer,
    db: asyncpg.Connection,
) -> None:
    """Celery runs ``on_failure`` of a task killed by its hard time limit in the worker's
    main process, where no child's resources are open: the dead-lettering must work
    there too, or the row waits for the relay's sweep (minutes) with its order pending."""
    smtp_server.handler.stall = True
    worker = processes.worker()
    processes.relay()
    order = await new_order(shop.client)
    order_id = int(str(order["id"]))

    async def mid_send() -> bool:
        return smtp_server.handler.stalled.is_set()

    await eventually(mid_send, 20, "the worker is in the middle of DATA")
    # A child that neither finishes nor reacts to the soft limit: only the hard limit
    # (6 s here) ends it, from the main process.
    stopped = pool_children(worker)
    for child in stopped:
        os.kill(child, signal.SIGSTOP)
    try:

        async def dead() -> bool:
            return (
                await db.fetchval(
                    "SELECT dead_at FROM outbox WHERE payload->>'order_id' = $1", str(order_id)
                )
                is not None
            )

        await eventually(dead, 20, "the timed-out task is dead-lettered")
    finally:
        for child in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGCONT)
    smtp_server.handler.stall = False
    row = await db.fetchrow("SELECT publish_count, last_error, done_at FROM outbox")
    assert row is not None
    assert row["done_at"] is None
    assert row["publish_count"] == 1
    assert "TimeLimitExceeded" in row["last_error"]
    assert "worker resources are not open" not in worker.output()
    await status_becomes(shop.client, order_id, "failed")
    assert smtp_server.handler.accepted() == []
