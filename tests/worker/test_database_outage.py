"""The database goes away just after the SMTP server accepted an email.

The attempt knows the email is out: it must record that once the database is back, and
never send it again, however long the outage (here: longer than the email's claim lease,
after which a fresh attempt would claim and send).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from services.core.settings import Settings
from tests.support.api import RunningApi
from tests.support.delivery import emails, eventually, new_order, no_more_emails, status_becomes
from tests.support.endpoints import DatabaseEndpoint, RestartablePooler, restartable_pooler
from tests.support.processes import Processes
from tests.support.smtp import SmtpServer


@pytest.fixture
def worker_pooler(
    servers_dir: Path, postgres_server: DatabaseEndpoint
) -> Iterator[RestartablePooler]:
    """The worker's own pooler: only the worker loses its database."""
    with restartable_pooler(servers_dir, postgres_server, "worker") as pooler:
        yield pooler


async def test_an_accepted_email_is_recorded_after_the_outage_and_never_sent_again(
    processes: Processes,
    shop: RunningApi,
    smtp_server: SmtpServer,
    db: asyncpg.Connection,
    worker_env: dict[str, str],
    worker_settings: Settings,
    worker_pooler: RestartablePooler,
    tmp_path: Path,
) -> None:
    # Only the worker goes through the pooler that disappears; the api and the relay
    # keep theirs, as in a pod whose Postgres is unreachable from one place.
    workers = Processes({**worker_env, "STAMPEDE_DB__URL": worker_pooler.url}, tmp_path)
    try:
        workers.worker()
        processes.relay()
        gone = threading.Event()

        def database_goes_away() -> None:
            worker_pooler.stop()
            gone.set()

        smtp_server.handler.on_accept = database_goes_away
        order = await new_order(shop.client)
        order_id = int(str(order["id"]))

        async def outage_began() -> bool:
            return gone.is_set()

        await eventually(outage_began, 30, "the email accepted and the database gone")
        await emails(smtp_server, 1, within=1)
        # Past the claim's lease: from here a fresh attempt could claim and send again.
        await asyncio.sleep(worker_settings.worker.claim_lease_s + 2)
        worker_pooler.start()

        await status_becomes(shop.client, order_id, "sent")
        # Retries back off for up to retry_backoff_max_s: a resend would come within it.
        await no_more_emails(
            smtp_server, 1, settle_s=worker_settings.worker.retry_backoff_max_s + 3
        )
        assert await db.fetchval("SELECT attempts FROM email_deliveries") == 1
        assert await db.fetchval("SELECT sent_at IS NOT NULL FROM email_deliveries")
        assert await db.fetchval("SELECT done_at IS NOT NULL FROM outbox")
    finally:
        workers.stop_all()
