"""Wiring into the Celery worker's life cycle: logging, per-child resources, metrics."""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import signals

from services.core.settings import Settings
from services.core.telemetry.logs import logging_config
from services.core.telemetry.prometheus import forget_process, serve_metrics
from services.worker import metrics, runtime


def install(settings: Settings) -> None:
    """Connect the worker's signal handlers (once per process, from ``app``)."""

    def setup_logging(**_: Any) -> None:
        # Connecting this signal also stops Celery from configuring logging itself.
        logging.config.dictConfig(logging_config(settings.log.level, settings.log.json_format))

    def open_resources(**_: Any) -> None:
        runtime.open_resources(settings)

    def close_resources(**_: Any) -> None:
        runtime.close_resources()
        forget_process(os.getpid())

    def serve_metrics_from_main_process(**_: Any) -> None:
        port = settings.worker.metrics_port
        if port is not None:
            serve_metrics(f"{settings.worker.metrics_addr}:{port}")

    signals.setup_logging.connect(setup_logging, weak=False)
    signals.worker_process_init.connect(open_resources, weak=False)
    signals.worker_process_shutdown.connect(close_resources, weak=False)
    signals.worker_init.connect(serve_metrics_from_main_process, weak=False)
    metrics.install_task_hooks()
