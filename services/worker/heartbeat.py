"""Proof that the worker's consumer is alive: a file it touches while it consumes.

The worker's ``/metrics`` is served by a thread of the main process, which keeps
answering while the consumer itself is stuck (a blocked event loop, a broker connection
it never gets back). This consumer bootstep touches ``worker.heartbeat_file`` from the
consumer's own timer, on its event loop, every ``heartbeat_interval_s``; Celery stops the
step while the consumer reconnects and starts it again once it consumes. The chart's
liveness probe checks the file's age, with a threshold generous enough that a short
broker outage does not restart every worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

from services.core.settings import WorkerSettings


def install(app: Celery, settings: WorkerSettings) -> None:
    """Add the heartbeat to ``app``'s consumer, if a heartbeat file is configured."""
    if settings.heartbeat_file is None:
        return
    path = Path(settings.heartbeat_file)
    interval = settings.heartbeat_interval_s

    class ConsumerHeartbeat(bootsteps.StartStopStep):
        # Once the consumer consumes: its tasks are registered and its queues bound.
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, consumer: Any, **kwargs: Any) -> None:
            super().__init__(consumer, **kwargs)
            self._timer: Any = None

        def start(self, consumer: Any) -> None:
            path.touch()
            self._timer = consumer.timer.call_repeatedly(interval, path.touch)

        def stop(self, consumer: Any) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    app.steps["consumer"].add(ConsumerHeartbeat)
