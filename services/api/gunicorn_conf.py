"""gunicorn settings, from ``Settings().server``.

Run as ``gunicorn -c python:services.api.gunicorn_conf 'services.api.main:create_app()'``.

No ``preload_app``: engines and Redis pools must be created in each worker after fork
(they are, in the ASGI lifespan), never shared across processes.
"""

from __future__ import annotations

import tempfile
from typing import Any

from services.core.settings import Settings
from services.core.telemetry.logs import logging_config
from services.core.telemetry.prometheus import (
    forget_process,
    prepare_multiprocess_dir,
    serve_metrics,
)

_settings = Settings()
if _settings.metrics.enabled:
    # Now, in the master, before anything imports prometheus_client: the workers forked
    # later inherit multiprocess mode (see services.core.telemetry.prometheus).
    prepare_multiprocess_dir(
        _settings.metrics.multiproc_dir or tempfile.mkdtemp(prefix="stampede-metrics-")
    )

bind = [_settings.server.bind]
workers = _settings.server.workers
worker_class = "services.api.uvicorn_worker.StampedeWorker"
max_requests = _settings.server.max_requests
max_requests_jitter = _settings.server.max_requests_jitter
keepalive = _settings.server.keepalive_s
timeout = _settings.server.timeout_s
# On SIGTERM, workers stop accepting and get this long to finish in-flight requests.
graceful_timeout = _settings.server.graceful_timeout_s
backlog = _settings.server.backlog
preload_app = False
proc_name = "stampede-api"
accesslog = None  # the app's access log knows the route template and the request id
logconfig_dict = logging_config(_settings.log.level, _settings.log.json_format)


# --- metrics: prometheus_client multiprocess mode, served by the master ---------------


def when_ready(server: object) -> None:
    # The master never handles requests, so /metrics keeps answering while every
    # worker is busy, and it lives on its own port that is never exposed publicly.
    if _settings.metrics.enabled:
        serve_metrics(_settings.metrics.bind)


def child_exit(server: object, worker: Any) -> None:
    forget_process(worker.pid)
