"""The Celery tasks: thin wrappers that map outcomes onto Celery's retry machinery.

Retries (exponential backoff with full jitter, capped) are Celery's ``autoretry_for``;
a task that exhausts them, or fails permanently, is dead-lettered by
``DeadLetteringTask.on_failure``: its outbox row is parked with the error and the
order's ``confirmation_status`` becomes ``failed``, until an operator retries it
(``python -m services.worker.deadletters``).
"""

from __future__ import annotations

import logging
import random
import smtplib
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from billiard.einfo import ExceptionInfo
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.core.outbox import SEND_ORDER_CONFIRMATION, SEND_ORDER_CONFIRMATIONS
from services.core.settings import Settings
from services.worker import confirmations, metrics, outbox_lifecycle, runtime
from services.worker.cache_invalidation import (
    forget_orders_of_user,
    forget_orders_of_users,
    forget_user_orders,
)
from services.worker.errors import (
    AcceptedNotRecorded,
    LeaseBusy,
    MailRejected,
    is_permanent_smtp_error,
)

log = logging.getLogger(__name__)

# Worth another try later: network trouble and timeouts (smtplib's errors are OSErrors;
# permanent SMTP refusals are turned into MailRejected first), database outages, and an
# attempt that ran into the soft time limit.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    DBAPIError,
    PoolTimeout,
    SoftTimeLimitExceeded,
)


# Whatever stops the recording of an accepted email is retried, never dead-lettered: an
# operator's retry of a dead letter would send a second email.
RECORDING_FAILURES: tuple[type[BaseException], ...] = (*TRANSIENT, SQLAlchemyError)

# An email the SMTP server accepted is recorded however long the database is away: its
# retries never run out (and never dead-letter it, which an operator could retry into a
# second email). Celery has no "infinite" per retry() call, hence a number no outage hits.
RECORD_UNTIL_DONE = 10**9


class DeadLetteringTask(Task):  # type: ignore[type-arg]
    """Parks the outbox row of a task that failed for good (never raises itself).

    ``on_failure`` runs in the pool child that ran the task, or, for a task killed by its
    hard time limit, in the worker's main process: it works in either
    (``runtime.in_use``).
    """

    # Set per task by ``register_tasks`` (a task option becomes a class attribute).
    stampede_settings: Settings

    def on_failure(
        self,
        exc: Exception,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: ExceptionInfo,
    ) -> None:
        try:
            with runtime.in_use(self.stampede_settings) as resources:
                self._dead_letter(resources, exc, task_id, kwargs)
        except Exception:
            # Never raise from here: the row stays "published, not done", and the relay's
            # sweep publishes it again.
            log.exception("task %s: could not dead-letter", task_id)

    def _dead_letter(
        self,
        resources: runtime.WorkerResources,
        exc: Exception,
        task_id: str,
        kwargs: dict[str, Any],
    ) -> None:
        if "items" in kwargs:
            self._dead_letter_batch(resources, exc, task_id, kwargs["items"])
            return
        outbox_id, order_id = kwargs.get("outbox_id"), kwargs.get("order_id")
        log.error(
            "task %s failed for good, dead-lettered",
            task_id,
            extra={"outbox_id": outbox_id, "order_id": order_id, "error": repr(exc)},
        )
        if outbox_id is None:
            return
        try:
            with resources.engine.begin() as conn:
                outbox_lifecycle.mark_dead(
                    conn, outbox_id, order_id, f"{type(exc).__name__}: {exc}"
                )
        except SQLAlchemyError:
            # The row stays "published, not done": the relay's sweep publishes it again.
            log.exception("could not dead-letter outbox row %s", outbox_id)
            return
        if order_id is not None:
            forget_user_orders(resources, order_id)  # its confirmation_status is "failed"

    def _dead_letter_batch(
        self,
        resources: runtime.WorkerResources,
        exc: Exception,
        task_id: str,
        items: list[Any],
    ) -> None:
        batch = [confirmations.Item.from_message(item) for item in items]
        accepted = [item for item in batch if item.accepted_by is not None]
        if accepted:
            # Never dead-lettered: an operator's retry would send them a second time.
            # Their rows stay "published, not done"; the sweep hands them back.
            log.error(
                "task %s failed with accepted emails unrecorded",
                task_id,
                extra={"order_ids": [item.order_id for item in accepted], "error": repr(exc)},
            )
        dead = [(item, None, exc) for item in batch if item.accepted_by is None]
        if dead:
            dead_letter(resources, task_id, dead)


def dead_letter(
    resources: runtime.WorkerResources,
    task_id: str,
    failed: Sequence[tuple[confirmations.Item, int | None, BaseException]],
) -> bool:
    """Park the outbox rows of confirmations that failed for good; False if the
    database would not take it (the rows then stay "published, not done")."""
    for item, _, error in failed:
        log.error(
            "task %s failed for good, dead-lettered",
            task_id,
            extra={"outbox_id": item.outbox_id, "order_id": item.order_id, "error": repr(error)},
        )
    try:
        with resources.engine.begin() as conn:
            for item, _, error in failed:
                outbox_lifecycle.mark_dead(
                    conn, item.outbox_id, item.order_id, f"{type(error).__name__}: {error}"
                )
    except SQLAlchemyError:
        log.exception("could not dead-letter outbox rows %s", [i.outbox_id for i, _, _ in failed])
        return False
    known = [user_id for _, user_id, _ in failed if user_id is not None]
    forget_orders_of_users(resources, known)  # their confirmation_status is "failed"
    for item, user_id, _ in failed:
        if user_id is None:
            forget_user_orders(resources, item.order_id)
    return True


def register_tasks(app: Celery, settings: Settings) -> None:
    worker = settings.worker
    # Both confirmation tasks are delivered alike: acked late, retried with backoff,
    # dead-lettered when they run out.
    delivery: dict[str, Any] = {
        "bind": True,
        "base": DeadLetteringTask,
        "stampede_settings": settings,
        "autoretry_for": TRANSIENT,
        "retry_backoff": worker.retry_backoff_s,
        "retry_backoff_max": worker.retry_backoff_max_s,
        "retry_jitter": True,
        "max_retries": worker.max_retries,
        "soft_time_limit": worker.soft_time_limit_s,
        "time_limit": worker.time_limit_s,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "ignore_result": True,
    }

    @app.task(
        name=SEND_ORDER_CONFIRMATION,
        **delivery,
    )
    def send_order_confirmation(
        self: Task,  # type: ignore[type-arg]
        outbox_id: int,
        order_id: int,
        accepted_by: str | None = None,
    ) -> str:
        """``accepted_by``: the attempt whose email the SMTP server already accepted;
        set, the task only records that (see ``confirmations``)."""
        resources = runtime.current()
        if accepted_by is not None:
            return record_only(self, outbox_id, order_id, accepted_by)
        token = f"{self.request.id}/{uuid4().hex[:12]}"
        try:
            delivery = confirmations.send_order_confirmation(
                resources.engine, settings, outbox_id=outbox_id, order_id=order_id, token=token
            )
        except LeaseBusy as busy:
            # Not a failure: come back when the other attempt's lease has run out.
            raise self.retry(countdown=busy.retry_in_s + random.uniform(0.1, 1.0)) from None
        except AcceptedNotRecorded as accepted:
            log.warning("%s; recording it later", accepted)
            raise retry_recording(self, outbox_id, order_id, accepted.token) from None
        except smtplib.SMTPException as error:
            if is_permanent_smtp_error(error):
                raise MailRejected(str(error)) from error
            raise
        if delivery.user_id is not None:  # the order's confirmation_status is now "sent"
            forget_orders_of_user(resources, delivery.user_id)
        return delivery.outcome

    def record_only(
        task: Task,  # type: ignore[type-arg]
        outbox_id: int,
        order_id: int,
        token: str,
    ) -> str:
        resources = runtime.current()
        try:
            user_id = confirmations.record_accepted(
                resources.engine, settings, outbox_id=outbox_id, order_id=order_id, token=token
            )
        except RECORDING_FAILURES:
            raise retry_recording(task, outbox_id, order_id, token) from None
        if user_id is not None:
            forget_orders_of_user(resources, user_id)
        return "sent"

    def retry_recording(
        task: Task,  # type: ignore[type-arg]
        outbox_id: int,
        order_id: int,
        token: str,
    ) -> BaseException:
        countdown = get_exponential_backoff_interval(
            worker.retry_backoff_s,
            task.request.retries,
            worker.retry_backoff_max_s,
            full_jitter=True,
        )
        kwargs = {"outbox_id": outbox_id, "order_id": order_id, "accepted_by": token}
        return task.retry(kwargs=kwargs, countdown=countdown, max_retries=RECORD_UNTIL_DONE)

    @app.task(
        name=SEND_ORDER_CONFIRMATIONS,
        **delivery,
    )
    def send_order_confirmations(
        self: Task,  # type: ignore[type-arg]
        items: list[list[Any]],
    ) -> str:
        """Several confirmations over one SMTP session (``confirmations.send_batch``);
        ``items``: ``[outbox_id, order_id]``, or ``[outbox_id, order_id, accepted_by]``
        for an email to record only. What cannot be finished now is retried as a batch
        of its own: emails to send with the task's backoff (dead-lettered once it runs
        out), accepted emails to record until the database takes them (never given up).
        """
        resources = runtime.current()
        token = f"{self.request.id}/{uuid4().hex[:12]}"
        batch = confirmations.send_batch(
            resources.engine,
            settings,
            [confirmations.Item.from_message(item) for item in items],
            token=token,
        )
        if batch.failed and not dead_letter(resources, str(self.request.id), batch.failed):
            # Not parked: they go round again, and fail for good again.
            batch.again.extend(item for item, _, _ in batch.failed)
        forget_orders_of_users(resources, batch.stale_users)
        for outcome, count in (
            ("sent", batch.sent),
            ("already_sent", batch.already_sent),
            ("failed", len(batch.failed)),
            ("retried", len(batch.again)),
            ("continued", len(batch.rest)),
        ):
            if count:
                metrics.EMAILS.labels(outcome).inc(count)
        if batch.rest:
            # Out of time, not failed: the rest goes on at once, a new task.
            self.apply_async(kwargs={"items": [item.to_message() for item in batch.rest]})
        if batch.again:
            raise retry_batch(self, batch)
        return f"sent {batch.sent}, already sent {batch.already_sent}, failed {len(batch.failed)}"

    def retry_batch(
        task: Task,  # type: ignore[type-arg]
        batch: confirmations.Batch,
    ) -> BaseException:
        accepted = [item.to_message() for item in batch.again if item.accepted_by is not None]
        unsent = [item.to_message() for item in batch.again if item.accepted_by is None]
        backoff = get_exponential_backoff_interval(
            worker.retry_backoff_s,
            task.request.retries,
            worker.retry_backoff_max_s,
            full_jitter=True,
        )
        if accepted:
            log.warning("%d accepted emails not recorded yet; recording them later", len(accepted))
            if not unsent:
                return task.retry(
                    kwargs={"items": accepted},
                    countdown=backoff,
                    max_retries=RECORD_UNTIL_DONE,
                    exc=batch.error,
                )
            # Their own message, so the sends below keep their own retry budget.
            task.apply_async(kwargs={"items": accepted}, countdown=backoff)
        countdown: float = backoff if batch.error is not None else 0
        if batch.lease_busy_s:
            # Not a failure: come back when the other attempt's lease has run out.
            countdown = max(countdown, batch.lease_busy_s + random.uniform(0.1, 1.0))
        return task.retry(kwargs={"items": unsent}, countdown=countdown, exc=batch.error)
