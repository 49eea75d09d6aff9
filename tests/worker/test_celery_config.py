from __future__ import annotations

from services.core.settings import Settings
from services.worker.celery_app import celery_config


def test_task_events_only_when_asked() -> None:
    """Each event is a broker publish (four per email): off unless something reads them."""
    quiet = celery_config(Settings(profile="dev"))
    assert not quiet["task_send_sent_event"]
    assert not quiet["worker_send_task_events"]
    asked = celery_config(Settings(profile="dev", worker={"task_events": True}))  # type: ignore[arg-type]
    assert asked["task_send_sent_event"]
    assert asked["worker_send_task_events"]
