"""The relay's wake-ups, against a real Postgres: a burst of commits is one batch."""

from __future__ import annotations

import threading
import time

import psycopg

from services.core.outbox import OUTBOX_CHANNEL
from services.worker.relay import Listener
from tests.support.endpoints import DatabaseEndpoint


def notify(dsn: str, times: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(times):
            conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")


def test_a_burst_of_notifications_wakes_the_relay_once(
    postgres_server: DatabaseEndpoint,
) -> None:
    listener = Listener(postgres_server.dsn, threading.Event(), linger_s=0.3)
    listener.listen()
    try:
        notify(postgres_server.dsn, 5)
        started = time.monotonic()
        listener.wait(timeout=5)
        woke_after = time.monotonic() - started
        # Lingered, then took the other four: the next wait finds nothing queued.
        started = time.monotonic()
        listener.wait(timeout=0.5)
        idle = time.monotonic() - started
    finally:
        listener.close()
    assert 0.3 <= woke_after < 2, woke_after
    assert idle >= 0.5, idle


def test_a_full_batch_stops_the_lingering(postgres_server: DatabaseEndpoint) -> None:
    listener = Listener(postgres_server.dsn, threading.Event(), linger_s=5, most=3)
    listener.listen()
    try:
        notify(postgres_server.dsn, 4)
        started = time.monotonic()
        listener.wait(timeout=5)
        assert time.monotonic() - started < 2
    finally:
        listener.close()
