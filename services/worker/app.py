"""The worker's entry point: ``celery -A services.worker.app worker``.

Celery needs a module-level app; it connects to nothing until the worker starts, and the
database pools are opened per child after fork (``hooks``).
"""

from __future__ import annotations

from services.core.settings import Settings
from services.worker import hooks
from services.worker.celery_app import create_celery

settings = Settings()
app = create_celery(settings)
hooks.install(settings)
