"""L2: the cache Redis, reached through three Lua scripts, a timeout and a breaker.

Each script is one round trip and runs atomically, on Redis' clock (``TIME``) only, so
no two processes ever compare their own clocks.

* ``read``: fetch the entry, say whether it is fresh, stale (servable while one
  request recomputes) or only a fallback (a tag was invalidated at or after the moment
  its computation started, ``t0``, or it is past its stale window), and, if it is not
  fresh, try to take the recompute lock (``SET NX PX``: a short lease). A fallback is
  kept, until ``stale_if_error_s`` past its stale window, for one case only: the
  recomputation fails because the database is down (stale-if-error, RFC 5861).
* ``store``: write the entry unless one of its tags was invalidated since ``t0``, then
  release the lock.
* ``release``: drop the lock if we still hold it.

Why ``t0`` instead of deleting keys on invalidation: a recomputation that read the
database before a write committed may finish after the write's invalidation. Comparing
its ``t0`` with the tag's invalidation time refuses it at store time and, should it
slip in anyway, at every read. Invalidation is O(tags), not O(entries), and an LRU
eviction can never lose one: a marker is read on every lookup, so it stays hot.

Lookups touch marker keys that are not in ``KEYS``: fine on one Redis (the design's cache
instance); Redis Cluster would need the tags hash-tagged with the entry.

Any error, timeout or an open breaker makes a method return ``None``/``False``: the
caller goes on without L2, straight to the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.core.cache.breaker import CircuitBreaker
from services.core.cache.counters import CacheMetrics
from services.core.cache.entry import Entry

T = TypeVar("T")
log = logging.getLogger("stampede.cache")

_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local e = redis.call('HMGET', KEYS[1], 'meta', 'body', 'gz', 't0', 'ttl', 'tags', 'grace')
local state = 0
if e[1] then
  local t0 = tonumber(e[4])
  local age = now - t0
  state = 2
  if age < tonumber(e[5]) then state = 1 end
  if e[7] and age >= tonumber(e[7]) then state = 3 end
  for tag in string.gmatch(e[6], '%S+') do
    local inv = redis.call('GET', ARGV[1] .. tag)
    if inv and tonumber(inv) >= t0 then
      state = 3
      break
    end
  end
end
local locked = 0
if state ~= 1 and ARGV[2] ~= '' then
  if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then locked = 1 end
end
if state == 0 then return {now, 0, locked} end
return {now, state, locked, e[1], e[2], e[3], e[4], e[5]}
"""

_STORE = """
local function release()
  if ARGV[8] ~= '' and redis.call('GET', KEYS[2]) == ARGV[8] then redis.call('DEL', KEYS[2]) end
end
local t0 = tonumber(ARGV[2])
for tag in string.gmatch(ARGV[6], '%S+') do
  local inv = redis.call('GET', ARGV[1] .. tag)
  if inv and tonumber(inv) >= t0 then
    release()
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'meta', ARGV[3], 'body', ARGV[4], 'gz', ARGV[5],
           't0', ARGV[2], 'ttl', ARGV[7], 'tags', ARGV[6], 'grace', ARGV[10])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
release()
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# "fallback": invalidated, or past its stale window: never served, unless the origin
# cannot answer (stale-if-error, RFC 5861).
State = Literal["none", "fresh", "stale", "fallback"]
_STATES: dict[int, State] = {0: "none", 1: "fresh", 2: "stale", 3: "fallback"}


@dataclass(frozen=True, slots=True)
class Lookup:
    state: State
    # Whether this call took the recompute lock (only tried when asked and not fresh).
    locked: bool
    # Redis' clock at the lookup: the ``t0`` of a recomputation started now.
    now_us: int
    entry: Entry | None


def marker_prefix(namespace: str) -> str:
    return f"{namespace}:t:"


class RedisTier:
    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        op_timeout_s: float,
        lease_s: float,
        breaker: CircuitBreaker,
        metrics: CacheMetrics,
        stale_if_error_s: float = 0.0,
    ) -> None:
        self.redis = redis
        self._stale_if_error_s = stale_if_error_s
        self.breaker = breaker
        self._markers = marker_prefix(namespace)
        self._timeout = op_timeout_s
        self._lease_ms = str(int(lease_s * 1000))
        self._metrics = metrics
        self._read = redis.register_script(_READ)
        self._store = redis.register_script(_STORE)
        self._release = redis.register_script(_RELEASE)

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T | None:
        if not self.breaker.allow():
            return None
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        except (RedisError, OSError, TimeoutError) as error:
            self.breaker.failure()
            self._metrics.error(operation)
            log.debug("cache redis %s failed: %r", operation, error)
            return None
        except BaseException:
            # Cancelled mid-call: not Redis' fault, but a half-open trial must end.
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    async def read(self, key: str, *, lock_token: str | None) -> Lookup | None:
        """The entry under ``key``; with ``lock_token``, also try to lock it if not fresh."""
        args = [self._markers, lock_token or "", self._lease_ms]
        reply = await self._call("read", lambda: self._read(keys=[key, key + ":lock"], args=args))
        if reply is None:
            return None
        values = cast(list[Any], reply)
        now_us, state = int(values[0]), _STATES[int(values[1])]
        entry = None
        if state != "none":
            meta, body, gzip_body, t0, ttl = values[3:8]
            entry = Entry.from_stored(
                meta,
                body,
                gzip_body,
                age_s=(now_us - int(t0)) / 1e6,
                ttl_s=int(ttl) / 1e6,
                now=time.monotonic(),
            )
        return Lookup(state=state, locked=bool(int(values[2])), now_us=now_us, entry=entry)

    async def store(self, key: str, entry: Entry, *, t0_us: int, lock_token: str | None) -> bool:
        """Store unless a tag was invalidated since ``t0_us``; release the lock either way."""
        grace_s = entry.ttl_s + entry.stale_s
        lifetime_ms = int((grace_s + self._stale_if_error_s) * 1000)
        args: list[str | bytes] = [
            self._markers,
            str(t0_us),
            entry.to_meta(),
            entry.body,
            entry.gzip_body or b"",
            " ".join(entry.tags),
            str(int(entry.ttl_s * 1_000_000)),
            lock_token or "",
            str(max(lifetime_ms, 1)),
            str(int(grace_s * 1_000_000)),
        ]
        reply = await self._call("store", lambda: self._store(keys=[key, key + ":lock"], args=args))
        return bool(reply)

    async def release(self, key: str, lock_token: str) -> None:
        await self._call("release", lambda: self._release(keys=[key + ":lock"], args=[lock_token]))
