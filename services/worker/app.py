"""The worker's entry point: ``celery -A services.worker.app worker``.

Celery needs a module-level app; it connects to nothing until the worker starts, and the
database pools are opened per child after fork (``hooks``).
"""

from __future__ import annotations

import tempfile

from services.core.settings import Settings
from services.core.telemetry.prometheus import prepare_multiprocess_dir

settings = Settings()
if settings.worker.metrics_port is not None:
    # Before anything imports prometheus_client: the prefork children inherit
    # multiprocess mode, and the main process serves their aggregate (hooks).
    prepare_multiprocess_dir(
        settings.worker.metrics_multiproc_dir or tempfile.mkdtemp(prefix="stampede-worker-")
    )

from services.worker import hooks  # noqa: E402 - after the metrics mode is chosen
from services.worker.celery_app import create_celery  # noqa: E402

app = create_celery(settings)
hooks.install(settings)
