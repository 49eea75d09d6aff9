"""The two tiers together: L1, then L2, then one recomputation for the whole fleet.

:meth:`TieredCache.fetch` is given a ``compute`` callable that produces the response
the slow way (the api runs the route). For one key, at any moment:

* in this process, one request (the *leader*) looks further than L1; the others (the
  *followers*) wait for what it finds (single-flight);
* across processes, one leader holds the Redis recompute lock (a lease) and computes;
  the other leaders serve the stale entry if there is one, or poll L2 until the fresh
  entry lands (bounded by ``lock_wait_s``, after which they compute themselves rather
  than fail);
* an *expired* entry (within its stale window) is served stale while one request
  recomputes; an *invalidated* entry is not served while the database answers: a write
  must be visible to the writer's next read. When the recomputation answers that the
  database is unreachable (a 502/503/504), the last entry kept for the key is served
  instead, invalidated or long expired (stale-if-error, up to ``stale_if_error_s``):
  during an outage an older answer beats none, and no newer one can be read anyway.
  Each process also remembers the last entry it saw per key (as many keys as L1
  holds), for when Redis cannot be asked either.

Without Redis (down, slow, breaker open) the leader computes and keeps the result in L1
only: the database sees one recomputation per key per process instead of one per
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from services.core.cache.counters import CacheMetrics
from services.core.cache.entry import Entry, build_entry
from services.core.cache.l1 import LocalCache
from services.core.cache.policy import CachePolicy
from services.core.cache.redis_tier import Lookup, RedisTier
from services.core.settings import CacheSettings

State = Literal["hit", "stale", "stale-if-error", "miss"]
# What a recomputation answers when the database is unreachable.
_ORIGIN_DOWN = frozenset({502, 503, 504})
# Only these response headers may be replaced by the stored entry's own; any other
# (a cookie, a Location) makes the response uncacheable.
_REPLAYED_HEADERS = frozenset({b"content-type", b"content-length"})


@dataclass(frozen=True, slots=True)
class Computed:
    """A response captured from the app."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    state: State
    # None: the response is not cacheable (e.g. a 404): send ``computed`` as it is.
    entry: Entry | None
    computed: Computed | None = None


Compute = Callable[[], Awaitable[Computed]]


class _Flight:
    """One in-process lookup/recomputation that other requests for the key wait on."""

    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.outcome: Outcome | None = None

    def resolve(self, outcome: Outcome | None) -> None:
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()


class TieredCache:
    def __init__(
        self, settings: CacheSettings, *, l1: LocalCache, l2: RedisTier, metrics: CacheMetrics
    ) -> None:
        self.settings = settings
        self.l1 = l1
        self.l2 = l2
        self.metrics = metrics
        self._flights: dict[str, _Flight] = {}
        # key -> the last entry this process served or stored for it, kept through
        # invalidations and expiry for stale-if-error alone.
        self._last_known: OrderedDict[str, Entry] = OrderedDict()

    def drop_tags(self, tags: Iterable[str]) -> None:
        """Apply an invalidation to this process: L1, and no joining older flights."""
        self.l1.drop_tags(tags)
        self._flights.clear()

    def clear_local(self) -> None:
        self.l1.clear()
        self._flights.clear()

    async def fetch(
        self,
        key: str,
        route: str,
        policy: CachePolicy,
        path_params: Mapping[str, str],
        compute: Compute,
    ) -> Outcome:
        entry = self.l1.get(key)
        if entry is not None:
            self.metrics.hit(route, "l1")
            return Outcome("hit", entry)
        flight = self._flights.get(key)
        if flight is not None:
            return await self._follow(key, flight, route, policy, path_params, compute)
        flight = self._flights[key] = _Flight()
        try:
            return await self._lead(key, route, policy, path_params, compute, flight)
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.resolve(None)

    async def _follow(
        self,
        key: str,
        flight: _Flight,
        route: str,
        policy: CachePolicy,
        path_params: Mapping[str, str],
        compute: Compute,
    ) -> Outcome:
        # The leader is bounded by lock_wait_s plus its own recomputation; past the
        # lease, stop trusting it and compute.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.lock_wait_s + self.settings.lock_lease_s):
                await flight.done.wait()
        shared = flight.outcome
        if shared is not None and shared.entry is not None:
            if shared.state in ("stale", "stale-if-error"):
                self.metrics.stale(route)
            else:
                self.metrics.hit(route, "l1")
            return Outcome(shared.state, shared.entry)
        # The leader's answer was not cacheable (or it failed): answer on our own.
        self.metrics.miss(route)
        computed = await compute()
        kept = self._kept_for_errors(key, computed, None)
        if kept is not None:
            return Outcome("stale-if-error", kept)
        return Outcome("miss", self._build(computed, policy, path_params), computed)

    def _remember(self, key: str, entry: Entry) -> None:
        self._last_known[key] = entry
        self._last_known.move_to_end(key)
        if len(self._last_known) > self.settings.l1_max_entries:
            self._last_known.popitem(last=False)

    def _kept_for_errors(self, key: str, computed: Computed, from_l2: Entry | None) -> Entry | None:
        """What to answer instead of ``computed`` when it says the database is down:
        the entry L2 kept, else this process's last one, while within its lifetime."""
        limit = self.settings.stale_if_error_s
        if computed.status not in _ORIGIN_DOWN or limit == 0:
            return None
        if from_l2 is not None:
            return from_l2
        entry = self._last_known.get(key)
        if entry is None or entry.age(time.monotonic()) > entry.ttl_s + entry.stale_s + limit:
            return None
        return entry

    async def _lead(
        self,
        key: str,
        route: str,
        policy: CachePolicy,
        path_params: Mapping[str, str],
        compute: Compute,
        flight: _Flight,
    ) -> Outcome:
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self.settings.lock_wait_s
        delay = 0.005
        epoch = self.l1.epoch
        found: Lookup | None = await self.l2.read(key, lock_token=token)
        fallback: Entry | None = None
        while True:
            if found is not None and found.state == "fallback":
                fallback = found.entry
            if found is None:
                # No L2 (down, slow, breaker open): compute and keep the result in L1.
                # The failed read may still have taken the lock: give it back if Redis
                # answers again (the breaker makes this free while it does not).
                outcome = await self._compute(
                    key, route, policy, path_params, compute, flight, epoch, fallback=fallback
                )
                await self.l2.release(key, token)
                return outcome
            if found.state == "fresh" and found.entry is not None:
                self._remember(key, found.entry)
                self.l1.put(key, route, found.entry, epoch=epoch)
                self.metrics.hit(route, "l2")
                outcome = Outcome("hit", found.entry)
                flight.resolve(outcome)
                return outcome
            if found.state == "stale" and found.entry is not None:
                self._remember(key, found.entry)
                stale = Outcome("stale", found.entry)
                flight.resolve(stale)
                if not found.locked:
                    self.metrics.stale(route)
                    return stale
            if found.locked or time.monotonic() >= deadline:
                # Past the deadline the lock holder is slow or gone (a lock taken by a
                # read that then timed out): compute and store anyway, so the key does
                # not stay uncached until the lease ends. ``found.now_us`` predates our
                # database reads, so an invalidation since still refuses the store.
                return await self._compute(
                    key,
                    route,
                    policy,
                    path_params,
                    compute,
                    flight,
                    epoch,
                    found.now_us,
                    token,
                    fallback=fallback,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            epoch = self.l1.epoch
            found = await self.l2.read(key, lock_token=token)

    async def _compute(
        self,
        key: str,
        route: str,
        policy: CachePolicy,
        path_params: Mapping[str, str],
        compute: Compute,
        flight: _Flight,
        epoch: int,
        t0_us: int | None = None,
        token: str | None = None,
        *,
        fallback: Entry | None = None,
    ) -> Outcome:
        self.metrics.miss(route)
        try:
            computed = await compute()
            entry = self._build(computed, policy, path_params)
        except BaseException:
            if token is not None:
                await self.l2.release(key, token)
            raise
        if entry is None:
            if token is not None:
                await self.l2.release(key, token)
            kept = self._kept_for_errors(key, computed, fallback)
            if kept is not None:
                self.metrics.stale(route)
                served = Outcome("stale-if-error", kept)
                flight.resolve(served)
                return served
            return Outcome("miss", None, computed)
        self._remember(key, entry)
        stored = True
        if t0_us is not None:
            stored = await self.l2.store(key, entry, t0_us=t0_us, lock_token=token)
            if not stored and token is not None:
                # Refused (the script released the lock) or failed (it may not have).
                await self.l2.release(key, token)
        if stored:
            self.l1.put(key, route, entry, epoch=epoch)
        flight.resolve(Outcome("hit", entry))
        return Outcome("miss", entry, computed)

    def _build(
        self, computed: Computed, policy: CachePolicy, path_params: Mapping[str, str]
    ) -> Entry | None:
        if computed.status != 200:
            return None  # negative results (404, 422, ...) are never cached
        content_type = None
        for name, value in computed.headers:
            if name == b"content-type":
                content_type = value
            elif name == b"vary" and value.lower() == b"accept-encoding":
                continue  # the compression middleware's; the entry sets its own Vary
            elif name not in _REPLAYED_HEADERS:
                return None
        if content_type is None:
            return None
        body = None
        if policy.body_tags is not None:
            try:
                body = json.loads(computed.body)
            except ValueError:
                return None
        return build_entry(
            status=computed.status,
            content_type=content_type,
            body=computed.body,
            tags=policy.tags_for(path_params, body),
            ttl_s=policy.ttl_s,
            stale_s=policy.stale_s,
            vary=policy.vary,
            now=time.monotonic(),
            compress_min_bytes=self.settings.compress_min_bytes,
            gzip_level=self.settings.gzip_level,
        )
