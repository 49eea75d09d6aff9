"""The worker process's resources, opened after fork and closed at exit.

Celery's prefork pool forks its children from the main process: a database pool created
before the fork would be shared by every child (one socket, many users). So each child
opens its own in ``worker_process_init`` (wired in ``hooks``) and tasks reach it here.
"""

from __future__ import annotations

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


def open_resources(settings: Settings) -> WorkerResources:
    global _current
    close_resources()
    _current = WorkerResources(
        settings=settings,
        engine=create_sync_engine(settings.database_url, settings.db, settings.worker.pool_size),
        cache_redis=Redis.from_url(
            settings.cache_redis_url,
            socket_timeout=settings.redis.socket_timeout_s,
            socket_connect_timeout=settings.redis.connect_timeout_s,
        ),
    )
    return _current


def close_resources() -> None:
    global _current
    if _current is not None:
        _current.engine.dispose()
        _current.cache_redis.close()
        _current = None


def current() -> WorkerResources:
    if _current is None:
        raise RuntimeError("worker resources are not open (worker_process_init did not run)")
    return _current
