"""Prometheus metrics of the worker and the relay, and the hooks that feed them.

The worker's prefork children each hold their own values, so the worker serves them
through prometheus_client's multiprocess mode (``services.worker.app`` switches it on,
``hooks`` serves the aggregate from the main process). The relay is a single process and
serves its own directly.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, signals
from kombu.exceptions import ChannelError
from prometheus_client import Counter, Gauge, Histogram

from services.worker.outbox_lifecycle import Backlog

TASKS = Counter("stampede_worker_tasks_total", "Task executions by outcome.", ["task", "state"])
TASK_RUNTIME = Histogram(
    "stampede_worker_task_runtime_seconds",
    "Task run time, retries and failures included.",
    ["task"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUEUE_WAIT = Histogram(
    "stampede_worker_queue_wait_seconds",
    "From the relay publishing a task to a worker starting it.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECEIVED = Counter("stampede_worker_tasks_received_total", "Tasks a worker took from the broker.")
# A task carries up to relay.confirmations_per_task emails: tasks do not count emails.
EMAILS = Counter(
    "stampede_worker_emails_total",
    "Confirmation emails by outcome: sent (and recorded), already sent, failed for good, "
    "set aside to be retried, left to a follow-up task.",
    ["outcome"],
)
QUEUE_LENGTH = Gauge("stampede_worker_queue_length", "Messages waiting in the broker.", ["queue"])
OUTBOX_BACKLOG = Gauge("stampede_outbox_unpublished", "Outbox rows not yet published.")
OUTBOX_OLDEST_AGE = Gauge(
    "stampede_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished row."
)
OUTBOX_PUBLISHED = Counter("stampede_outbox_published_total", "Outbox rows published.")
OUTBOX_REPUBLISHED = Counter(
    "stampede_outbox_republished_total", "Published rows handed back to the relay by the sweep."
)

PUBLISHED_AT_HEADER = "stampede_published_at"

_started: dict[str, float] = {}


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", sender))


def _on_prerun(task_id: str, task: Any, **_: Any) -> None:
    _started[task_id] = time.perf_counter()
    published_at = task.request.get(PUBLISHED_AT_HEADER)
    # Only a task's first run: a retry's wait includes its deliberate backoff.
    if isinstance(published_at, int | float) and not task.request.retries:
        QUEUE_WAIT.labels(_task_name(task)).observe(max(time.time() - published_at, 0.0))


def _on_received(**_: Any) -> None:
    RECEIVED.inc()


def _on_postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_RUNTIME.labels(_task_name(task)).observe(time.perf_counter() - started)
    TASKS.labels(_task_name(task), (state or "unknown").lower()).inc()


def install_task_hooks() -> None:
    """Count every task run by final state (success, retry, failure) and time it."""
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_received.connect(_on_received, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)


def observe_backlog(backlog: Backlog) -> None:
    OUTBOX_BACKLOG.set(backlog.unpublished)
    OUTBOX_OLDEST_AGE.set(backlog.oldest_age_s)


def queue_length(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (excludes those a worker holds unacked)."""
    with app.connection_for_read() as connection:
        # One try: by default the channel would retry connecting ~100 times, stalling the
        # caller (the relay) for minutes on a broker outage just to read a metric.
        connection.ensure_connection(max_retries=1, interval_start=0)
        # The stubs type the channel as the abstract StdChannel; every transport's has it.
        channel: Any = connection.default_channel
        try:
            length = int(channel.queue_declare(queue, passive=True).message_count)
        except ChannelError:
            # Redis keeps a queue as a list, which vanishes when empty: "no such queue".
            length = 0
    QUEUE_LENGTH.labels(queue).set(length)
    return length
