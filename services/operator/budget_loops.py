"""One reconcile loop per ConnectionBudget, started when the budget appears and cancelled
when it is deleted — kept by the operator itself rather than by a kopf daemon, because kopf
puts a finalizer on every object with a daemon, and a finalizer outliving the operator
(``helm uninstall`` deletes custom resources after Deployments) would hold the budget and
its namespace forever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Many pod events arrive together during a scale-out: reconcile once for the batch.
DEBOUNCE_S = 0.2

# One reconcile of the budget; returns the delay until the next.
Reconcile = Callable[[], Awaitable[float]]


@dataclass
class BudgetLoop:
    # The latest object kopf saw, and the status this loop wrote last (kopf's copy of our
    # own patch may arrive after the next reconcile has started).
    body: Any
    written_status: dict[str, Any] | None = None
    written_generation: int | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self, reconcile: Reconcile) -> None:
        while True:
            self.wakeup.clear()
            delay = await reconcile()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=delay)
                await asyncio.sleep(DEBOUNCE_S)


@dataclass
class BudgetLoops:
    """The running loops by "namespace/name"."""

    loops: dict[str, BudgetLoop] = field(default_factory=dict)

    def start(self, key: str, loop: BudgetLoop, reconcile: Reconcile) -> None:
        loop.task = asyncio.create_task(loop.run(reconcile), name=f"budget {key}")
        self.loops[key] = loop

    def wake(self, namespace: str | None) -> None:
        for key, loop in self.loops.items():
            if namespace is None or key.startswith(f"{namespace}/"):
                loop.wakeup.set()

    async def stop(self, key: str) -> None:
        loop = self.loops.pop(key, None)
        if loop is not None and loop.task is not None:
            loop.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop.task

    async def stop_all(self) -> None:
        for key in list(self.loops):
            await self.stop(key)
