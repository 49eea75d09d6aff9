"""The invalidation listener stops when cancelled, even when redis-py swallows the cancel.

redis-py's pubsub can turn a cancel that lands in ``get_message(timeout=...)``'s read
timeout into "no message"; the api's shutdown then waited forever for this task. The
stand-in below implements the part of redis-py's asyncio PubSub the listener uses and
behaves exactly that way.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from redis.asyncio import Redis

from services.core.cache.invalidation import InvalidationListener


class SwallowingPubSub:
    async def subscribe(self, *channels: str) -> None:
        pass

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 (redis-py's signature)
        try:
            await asyncio.sleep(timeout)
        except asyncio.CancelledError:
            return None  # the cancel is lost, as in redis-py's read-timeout path
        return None

    async def aclose(self) -> None:
        pass


class SwallowingRedis:
    def pubsub(self, **_: Any) -> SwallowingPubSub:
        return SwallowingPubSub()


async def test_a_cancelled_listener_stops_even_if_the_client_swallowed_the_cancel() -> None:
    async def nothing() -> None:
        pass

    listener = InvalidationListener(
        cast(Redis, SwallowingRedis()), "chan", on_tags=lambda tags: None, on_subscribed=nothing
    )
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.subscribed.wait(), 1)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done, "the listener kept running after cancel()"
    assert task.cancelled()
