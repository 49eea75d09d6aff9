"""Applying one consumer's pool size: the stored value new pods start from, and every Ready
pod's live PgBouncer, in the order that never lets the total exceed the budget.

* Shrinking: push to the pods first, then write the stored value (the ConfigMap).
* Growing: write the stored value first, then push to the pods.

A pod that fails is retried a few times at once and then reported; the others are still
applied. The next reconcile (soon, while a failure persists) tries it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from services.operator.pgbouncer_console import PushError


class StoreError(Exception):
    """The stored pool size (ConfigMap or file) could not be read or written."""


class PoolStore(Protocol):
    """Where the value a restarting or new pod reads lives: a ConfigMap's ``pool.ini`` in a
    cluster, a file in the local stack."""

    async def read(self) -> int | None:
        """The stored pool size, None when nothing is stored yet."""
        ...

    async def write(self, pool_size: int) -> None: ...


@dataclass(frozen=True)
class PodEndpoint:
    """A Ready pod's PgBouncer, reached on the pod IP."""

    name: str
    host: str
    port: int


Push = Callable[[PodEndpoint, int], Awaitable[None]]


@dataclass(frozen=True)
class ApplyOutcome:
    pool_size: int
    previous: int | None  # what the store held before
    applied: tuple[str, ...]  # pods that took the size
    failed: dict[str, str] = field(default_factory=dict)  # pod -> why
    store_error: str | None = None

    @property
    def complete(self) -> bool:
        return not self.failed and self.store_error is None


async def apply_pool_size(
    pool_size: int,
    pods: list[PodEndpoint],
    store: PoolStore,
    push: Push,
    attempts: int = 3,
    retry_delay: float = 0.2,
) -> ApplyOutcome:
    """Store and push ``pool_size`` in the safe order; never raises for one pod's failure."""
    try:
        previous = await store.read()
    except StoreError as error:
        # Without the stored value the order is unknown: push only (pods take effect now),
        # and report the store; a pod's restart is the only thing that would read it.
        applied, failed = await _push_all(pool_size, pods, push, attempts, retry_delay)
        return ApplyOutcome(pool_size, None, applied, failed, store_error=str(error))
    shrinking = previous is not None and pool_size < previous
    store_error = None
    if not shrinking and previous != pool_size:
        store_error = await _write(store, pool_size)
    applied, failed = await _push_all(pool_size, pods, push, attempts, retry_delay)
    if shrinking:
        store_error = await _write(store, pool_size)
    return ApplyOutcome(pool_size, previous, applied, failed, store_error)


async def _write(store: PoolStore, pool_size: int) -> str | None:
    try:
        await store.write(pool_size)
    except StoreError as error:
        return str(error)
    return None


async def _push_all(
    pool_size: int, pods: list[PodEndpoint], push: Push, attempts: int, retry_delay: float
) -> tuple[tuple[str, ...], dict[str, str]]:
    results = await asyncio.gather(
        *(_push_one(pod, pool_size, push, attempts, retry_delay) for pod in pods)
    )
    applied = tuple(pod.name for pod, error in zip(pods, results, strict=True) if error is None)
    failed = {pod.name: error for pod, error in zip(pods, results, strict=True) if error}
    return applied, failed


async def _push_one(
    pod: PodEndpoint, pool_size: int, push: Push, attempts: int, retry_delay: float
) -> str | None:
    error = ""
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(retry_delay * attempt)
        try:
            await push(pod, pool_size)
        except PushError as failure:
            error = str(failure)
        else:
            return None
    return error
