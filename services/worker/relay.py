"""The outbox relay: ``python -m services.worker.relay``.

Moves committed outbox rows to the broker, oldest first, in batches: lock a batch
(``FOR UPDATE SKIP LOCKED``, so any number of relays can run side by side without
publishing a row twice), publish each row as a Celery task, mark the published ones, commit.
A crash between publishing and the commit publishes those rows again later: harmless,
since the tasks are idempotent, and the price of never losing one.

It sleeps until an outbox insert commits (LISTEN on a direct Postgres connection, since
PgBouncer's transaction mode cannot hold a LISTEN) and polls every ``poll_interval_s``
anyway, so a missed notification or a lost LISTEN connection only adds latency. Every few
seconds it also hands stale published rows back (see ``outbox_lifecycle.republish_stale``) and
updates the backlog metrics.
"""

from __future__ import annotations

import logging
import logging.config
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from celery import Celery
from kombu.exceptions import KombuError
from prometheus_client import start_http_server
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from services.core.db import create_sync_engine, libpq_dsn
from services.core.outbox import (
    OUTBOX_CHANNEL,
    SEND_ORDER_CONFIRMATION,
    SEND_ORDER_CONFIRMATIONS,
)
from services.core.settings import Settings
from services.core.telemetry.logs import logging_config
from services.worker import metrics, outbox_lifecycle, retention
from services.worker.celery_app import QUEUE, create_celery

log = logging.getLogger(__name__)

# kombu's own retries of one publish (e.g. a stale pooled connection after a broker
# restart); beyond that the batch fails and the relay's backoff takes over.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
HOUSEKEEPING_EVERY_S = 5.0
MAX_BACKOFF_S = 10.0
BROKER_ERRORS = (KombuError, OSError)
# A task to publish: its name, its kwargs, the outbox rows it carries.
Task = tuple[str, dict[str, Any], list[int]]


class Listener:
    """Waits for a NOTIFY on the outbox channel, or ``timeout`` at most.

    Every order's commit notifies. Waking for each one would publish batches of one row
    (a transaction, a lock, an update and a broker connection per email), so after the
    first notification it gathers the others for ``linger_s``: a burst of commits
    becomes one batch.
    """

    def __init__(
        self, dsn: str | None, stop: threading.Event, *, linger_s: float = 0.0, most: int = 100
    ) -> None:
        self._dsn = dsn
        self._stop = stop
        self._linger_s = linger_s
        self._most = most
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def listen(self) -> None:
        """Start listening (before the first scan, so no commit slips between)."""
        if self._dsn is None or (self._conn is not None and not self._conn.closed):
            return
        try:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
            self._conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        except psycopg.Error:
            log.warning("cannot LISTEN for outbox inserts; polling", exc_info=True)
            self.close()

    def wait(self, timeout: float) -> None:
        self.listen()
        if self._conn is None:
            self._stop.wait(timeout)
            return
        try:
            woken = sum(1 for _ in self._conn.notifies(timeout=timeout, stop_after=1))
            if 0 < woken < self._most:
                # Also takes the notifications already queued, which would otherwise
                # wake the next wait at once for a row this batch publishes anyway.
                more = self._most - woken
                for _ in self._conn.notifies(timeout=self._linger_s, stop_after=more):
                    pass
        except psycopg.Error:
            log.warning("LISTEN connection lost; polling until it is back", exc_info=True)
            self.close()
            self._stop.wait(timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Relay:
    def __init__(self, engine: Engine, celery: Celery, settings: Settings) -> None:
        self._engine = engine
        self._celery = celery
        self._settings = settings.relay
        self._last_housekeeping = 0.0
        self._last_sweep = 0.0

    def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published.

        Rows published before a broker error are still marked (and committed) before the
        error propagates, so they are not published a second time.
        """
        published: list[int] = []
        error: Exception | None = None
        with self._engine.begin() as conn:
            rows = outbox_lifecycle.lock_unpublished(conn, self._settings.batch_size)
            if not rows:
                return 0
            try:
                with self._celery.producer_or_acquire() as producer:
                    for task, kwargs, ids in self._tasks(rows):
                        self._celery.send_task(
                            task,
                            kwargs=kwargs,
                            # For the queue-wait histogram (services.worker.metrics).
                            headers={metrics.PUBLISHED_AT_HEADER: time.time()},
                            producer=producer,
                            retry=True,
                            retry_policy=PUBLISH_RETRY,
                        )
                        published.extend(ids)
            except BROKER_ERRORS as broker_error:
                error = broker_error
            outbox_lifecycle.mark_published(conn, published)
        metrics.OUTBOX_PUBLISHED.inc(len(published))
        if error is not None:
            raise error
        return len(published)

    def _tasks(self, rows: list[outbox_lifecycle.Pending]) -> Iterator[Task]:
        """The tasks that carry ``rows``: order confirmations several to a task (see
        ``tasks.send_order_confirmations``), anything else one row per task."""
        per_task = self._settings.confirmations_per_task
        confirmations = [
            row for row in rows if row.task == SEND_ORDER_CONFIRMATION and "order_id" in row.payload
        ]
        for start in range(0, len(confirmations), per_task):
            chunk = confirmations[start : start + per_task]
            items = [[row.id, row.payload["order_id"]] for row in chunk]
            yield SEND_ORDER_CONFIRMATIONS, {"items": items}, [row.id for row in chunk]
        for row in rows:
            if row.task != SEND_ORDER_CONFIRMATION or "order_id" not in row.payload:
                yield row.task, {**row.payload, "outbox_id": row.id}, [row.id]

    def housekeeping(self) -> None:
        """Every few seconds: republish stale rows, refresh the backlog metrics; every
        ``prune_every_s``, delete what outlived its retention."""
        now = time.monotonic()
        if now - self._last_housekeeping < HOUSEKEEPING_EVERY_S:
            return
        self._last_housekeeping = now
        with self._engine.begin() as conn:
            republished = outbox_lifecycle.republish_stale(conn, self._settings.republish_after_s)
            backlog = outbox_lifecycle.backlog(conn)
        if republished:
            log.warning("republishing %d outbox rows whose task never finished", republished)
            metrics.OUTBOX_REPUBLISHED.inc(republished)
        metrics.observe_backlog(backlog)
        try:
            metrics.queue_length(self._celery, QUEUE)
        except BROKER_ERRORS:
            log.warning("cannot read the queue length", exc_info=True)
        if now - self._last_sweep >= self._settings.prune_every_s:
            self._last_sweep = now
            swept = retention.sweep(
                self._engine,
                outbox_retention_s=self._settings.outbox_retention_s,
                idempotency_key_retention_s=self._settings.idempotency_key_retention_s,
                batch_size=self._settings.prune_batch_size,
            )
            if swept.outbox_rows or swept.idempotency_keys:
                log.info(
                    "retention: deleted %d finished outbox rows, %d idempotency keys",
                    swept.outbox_rows,
                    swept.idempotency_keys,
                )

    def _heartbeat(self) -> None:
        # Proof of life for the liveness probe: the loop turns, whatever else fails.
        if self._settings.heartbeat_file is not None:
            Path(self._settings.heartbeat_file).touch()

    def run(self, listener: Listener, stop: threading.Event) -> None:
        listener.listen()
        failures = 0
        while not stop.is_set():
            self._heartbeat()
            try:
                published = self.publish_batch()
                self.housekeeping()
            except (SQLAlchemyError, *BROKER_ERRORS):
                failures += 1
                delay = random.uniform(0, min(MAX_BACKOFF_S, 0.25 * 2**failures))
                log.warning("relay cycle failed; again in %.1fs", delay, exc_info=True)
                stop.wait(delay)
                continue
            failures = 0
            if published < self._settings.batch_size:
                listener.wait(self._settings.poll_interval_s)


def main() -> None:
    settings = Settings()
    logging.config.dictConfig(logging_config(settings.log.level, settings.log.json_format))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if settings.relay.metrics_port is not None:
        start_http_server(settings.relay.metrics_port, addr=settings.relay.metrics_addr)
    engine = create_sync_engine(settings.database_url, settings.db, pool_size=1)
    celery = create_celery(settings)
    listen_url = settings.relay.listen_url
    listener = Listener(
        libpq_dsn(listen_url.get_secret_value()) if listen_url else None,
        stop,
        linger_s=settings.relay.linger_s,
        most=settings.relay.batch_size,
    )
    log.info("relay started", extra={"listen": listen_url is not None})
    try:
        Relay(engine, celery, settings).run(listener, stop)
    finally:
        listener.close()
        engine.dispose()
        celery.close()
    log.info("relay stopped")


if __name__ == "__main__":
    main()
