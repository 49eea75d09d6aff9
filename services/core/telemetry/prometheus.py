"""Prometheus plumbing shared by every process: multiprocess-aware registry and server.

Metric *definitions* live with the code they measure (``services/api/request_metrics.py``,
the worker's own module); this module only knows how samples are collected and served.
Our metric names start with ``stampede_``; labels stay bounded (route templates, status
classes, fixed enums), never raw paths or ids.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Buckets for a p99 < 100 ms objective: dense below and around 100 ms, coarse above.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess_dir(directory: str) -> None:
    """Empty ``directory`` and point prometheus_client at it.

    prometheus_client picks its value storage when it is first imported, so this must
    run before that import in the process whose children will record metrics — hence
    this module imports prometheus_client only inside functions. Stale files from an
    earlier run would otherwise be summed into the new one.

    Only the contents go: in the pod the directory is an emptyDir's mount point on a
    read-only root filesystem, which can be neither removed nor created again.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    # prometheus_client's documented interface is this environment variable; children
    # inherit it. (Settings stay the only *reader* of our own configuration.)
    os.environ[MULTIPROC_ENV] = str(path)


def collecting_registry() -> CollectorRegistry:
    """The registry to expose: the multiprocess aggregate when enabled, else the
    process's own default registry."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if MULTIPROC_ENV in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def serve_metrics(bind: str) -> None:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread of this process."""
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=collecting_registry())


def forget_process(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight, pool checked out) from the sum."""
    from prometheus_client.multiprocess import mark_process_dead

    if MULTIPROC_ENV in os.environ:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]
