"""The worker process's resources, opened after fork and closed at exit.

Celery's prefork pool forks its children from the main process: a database pool created
before the fork would be shared by every child (one socket, many users). So each child
opens its own in ``worker_process_init`` (wired in ``hooks``) and tasks reach it here.

The main process opens none for good, but Celery runs a task's ``on_failure`` there when
the task hit its hard time limit (the child was killed). :func:`in_use` lends such a
handler resources of its own for the call, closed before the pool forks another child.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from redis import Redis
from sqlalchemy import Engine

from services.core.db import create_sync_engine
from services.core.settings import Settings


@dataclass(frozen=True, slots=True)
class WorkerResources:
    settings: Settings
    engine: Engine
    # The api's cache Redis: the worker's writes change cached responses too.
    cache_redis: Redis


_current: WorkerResources | None = None


def _open(settings: Settings, pool_size: int) -> WorkerResources:
    return WorkerResources(
        settings=settings,
        engine=create_sync_engine(settings.database_url, settings.db, pool_size),
        cache_redis=Redis.from_url(
            settings.cache_redis_url,
            socket_timeout=settings.redis.socket_timeout_s,
            socket_connect_timeout=settings.redis.connect_timeout_s,
        ),
    )


def _close(resources: WorkerResources) -> None:
    resources.engine.dispose()
    resources.cache_redis.close()


def open_resources(settings: Settings) -> WorkerResources:
    global _current
    close_resources()
    _current = _open(settings, settings.worker.pool_size)
    return _current


def close_resources() -> None:
    global _current
    if _current is not None:
        _close(_current)
        _current = None


@contextmanager
def in_use(settings: Settings) -> Iterator[WorkerResources]:
    """This process's resources, or (in the main process, which has none) resources
    opened for the block and closed at its end: nothing of them is left for a child
    forked later to inherit."""
    if _current is not None:
        yield _current
        return
    lent = _open(settings, pool_size=1)
    try:
        yield lent
    finally:
        _close(lent)


def current() -> WorkerResources:
    if _current is None:
        raise RuntimeError("worker resources are not open (worker_process_init did not run)")
    return _current
