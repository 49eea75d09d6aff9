"""Tag invalidation: after the write commits, mark the tags in Redis and broadcast them.

The order of events that keeps readers from re-caching old data:

1. The unit of work names the tags its write makes stale (:func:`stale_on_commit`).
2. The transaction commits.
3. :meth:`TagInvalidator.invalidate` sets each tag's marker to Redis' clock and publishes
   the tags; this process's L1 drops them at once, the others' on the broadcast
   (milliseconds). The api does this before the response is sent, so the writer reads
   its own write.

Invalidating *before* the commit would let a concurrent reader re-cache the old rows
between the two. Invalidating after it leaves the race where a recomputation read the
old rows just before the commit and stores after the invalidation: the marker handles
it (see ``redis_tier``): the entry's computation started before the marker, so it is
refused.

If Redis is unreachable the tags are kept and sent again with the next invalidation or
when the broadcast listener reconnects; meanwhile other processes' L1 entries live at
most ``cache.l1_ttl_s`` and L2 is not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.cache.breaker import CircuitBreaker
from services.core.cache.counters import CacheMetrics
from services.core.cache.policy import TAG_PATTERN
from services.core.cache.redis_tier import marker_prefix

log = logging.getLogger("stampede.cache")

_SESSION_KEY = "stampede.cache.stale_tags"
# Beyond this many unsent tags the oldest information is useless anyway: every entry
# written before the outage has expired by the time so many writes happened.
MAX_PENDING = 10_000

_INVALIDATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  local old = redis.call('GET', key)
  -- never move a marker back, even if Redis' clock does
  local value = now
  if old and tonumber(old) > now then value = tonumber(old) end
  redis.call('SET', key, string.format('%.0f', value), 'PX', ARGV[2])
end
redis.call('PUBLISH', KEYS[1], table.concat(ARGV, ' ', 3))
return 1
"""


def stale_on_commit(session: AsyncSession, *tags: str) -> None:
    """Record that committing ``session`` makes cached responses with ``tags`` stale."""
    for tag in tags:
        if not TAG_PATTERN.match(tag):
            raise ValueError(f"bad cache tag {tag!r}")
    session.info.setdefault(_SESSION_KEY, set()).update(tags)


def take_stale_tags(session: AsyncSession) -> set[str]:
    """The tags recorded on ``session`` (and forget them): call after commit/rollback."""
    tags: set[str] = session.info.pop(_SESSION_KEY, set())
    return tags


def channel_name(namespace: str) -> str:
    return f"{namespace}:invalidate"


def invalidate_now(
    client: SyncRedis, *, namespace: str, marker_ttl_s: int, tags: Iterable[str]
) -> None:
    """The same invalidation, for processes without an event loop (the Celery worker,
    whose writes also change cached responses). Raises ``RedisError``/``OSError``."""
    batch = sorted(set(tags))
    if batch:
        client.eval(
            _INVALIDATE,
            1,
            channel_name(namespace),
            marker_prefix(namespace),
            str(marker_ttl_s * 1000),
            *batch,
        )


class TagInvalidator:
    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        marker_ttl_s: int,
        op_timeout_s: float,
        breaker: CircuitBreaker,
        metrics: CacheMetrics,
        drop_local: Callable[[Iterable[str]], None] = lambda tags: None,
    ) -> None:
        self.channel = channel_name(namespace)
        self._markers = marker_prefix(namespace)
        self._marker_ttl_ms = str(marker_ttl_s * 1000)
        self._timeout = op_timeout_s
        self._breaker = breaker
        self._metrics = metrics
        self._drop_local = drop_local
        self._script = redis.register_script(_INVALIDATE)
        self.pending: set[str] = set()

    async def invalidate(self, tags: Iterable[str]) -> bool:
        """Mark and broadcast ``tags``; never raises for Redis trouble (returns False)."""
        tags = set(tags)
        if tags:
            self._drop_local(tags)
        batch = self.pending | tags
        if not batch:
            return True
        if not self._breaker.allow():
            self._keep(batch)
            return False
        try:
            async with asyncio.timeout(self._timeout):
                await self._script(
                    keys=[self.channel], args=[self._markers, self._marker_ttl_ms, *sorted(batch)]
                )
        except (RedisError, OSError, TimeoutError) as error:
            self._breaker.failure()
            self._metrics.error("invalidate")
            log.warning("cache invalidation deferred (%r): %s", error, " ".join(sorted(batch)))
            self._keep(batch)
            return False
        self._breaker.success()
        self.pending.clear()
        return True

    def _keep(self, batch: set[str]) -> None:
        if len(batch) > MAX_PENDING:
            log.error("dropping %d deferred cache invalidations", len(batch))
            batch = set()
        self.pending = batch


class InvalidationListener:
    """Applies broadcast invalidations to this process's L1; reconnects forever.

    On every (re)subscription L1 is cleared, since broadcasts sent while we were not
    listening are lost, and deferred invalidations are sent.
    """

    def __init__(
        self,
        redis: Redis,
        channel: str,
        *,
        on_tags: Callable[[list[str]], None],
        on_subscribed: Callable[[], Awaitable[None]],
        retry_s: float = 0.25,
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._on_tags = on_tags
        self._on_subscribed = on_subscribed
        self._retry_s = retry_s
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as error:
                _raise_if_cancelled()
                log.debug("cache invalidation listener reconnecting: %r", error)
            finally:
                self.subscribed.clear()
            await asyncio.sleep(self._retry_s)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
            self.subscribed.set()
            await self._on_subscribed()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                _raise_if_cancelled()
                if message is not None and message["type"] == "message":
                    data = message["data"]
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    self._on_tags(text.split())
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that redis-py swallowed.

    A cancel that lands while ``get_message(timeout=...)`` is in its read timeout can come
    back as "no message" (or as redis' own ``TimeoutError``), and the loop would listen
    on forever: the api's shutdown hung on it (seen in the test suite, about one run in
    two, waiting for this task). The task still counts the request (``cancelling()``).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
