"""The Celery application, configured from Settings (the worker and the relay share it).

Reliability choices (docs/delivery.md):

* ``task_acks_late``: a message is acked when its task ends, not when it starts, so a
  worker that dies mid-task leaves it to be delivered again;
* ``task_reject_on_worker_lost``: a child killed by a signal or the OOM killer requeues
  its message instead of acking it as failed;
* prefetch 1 (``worker_prefetch_multiplier=1`` and the fair scheduler, the default): a
  worker holds only the message it runs, so a crash strands no queue of others;
* ``visibility_timeout`` (Redis has no broker-side ack deadline) above the longest a
  message may stay unacked; checked against the time limits in Settings;
* task events only when asked (``worker.task_events``, for Flower/exporters): each is a
  broker publish, four per task.

Creating the app opens no connection; kombu connects on first use.
"""

from __future__ import annotations

import warnings
from typing import Any

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning

from services.core.settings import Settings
from services.worker import heartbeat
from services.worker.tasks import register_tasks

QUEUE = "stampede"


def celery_config(settings: Settings) -> dict[str, Any]:
    broker = settings.broker
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": {
            "visibility_timeout": broker.visibility_timeout_s,
            # kombu scans for abandoned messages every interval x throttle seconds.
            "unacked_restore_interval": broker.restore_interval_s,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": broker.connect_timeout_s,
            "socket_timeout": max(broker.connect_timeout_s, 5.0),
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": broker.connect_timeout_s,
        # A task running when the broker connection drops is delivered again later (it
        # was never acked), but only after visibility_timeout: let it finish. Cancelling
        # it could kill it between the SMTP server's acceptance and the record, the one
        # moment a later attempt would send again; two attempts at once are held apart
        # by the email's lease anyway.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_concurrency": settings.worker.concurrency,
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_send_sent_event": settings.worker.task_events,
        "worker_send_task_events": settings.worker.task_events,
        "enable_utc": True,
        "timezone": "UTC",
    }


def create_celery(settings: Settings) -> Celery:
    # Celery warns on every broker connection loss that this setting's default changes
    # in 6.0; ours is explicit (above), so the warning says nothing about this app.
    warnings.filterwarnings(
        "ignore",
        message=r"\s*In Celery 5.1 we introduced an optional breaking change",
        category=CPendingDeprecationWarning,
    )
    app = Celery("stampede", set_as_current=False)
    app.conf.update(celery_config(settings))
    register_tasks(app, settings)
    heartbeat.install(app, settings.worker)
    return app
