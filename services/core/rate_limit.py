"""Rate limits shared by every process and pod: GCRA in Redis, spent locally in batches.

Each (policy, identity) has a theoretical arrival time (TAT) in the cache Redis, moved
by one atomic script (:data:`_GCRA`). A process does not ask Redis per request: it takes
an *allowance* of up to an allowance-lifetime's worth of the policy's rate (at least
``batch``, at most a tenth of the burst) at once, one refill per key at a time, spends it
locally (a dict lookup and
a decrement, so a cached hit stays cheap) and asks again when it is spent or older than
``allowance_ttl_s`` (unspent requests then lapse: a process never hoards). A refusal is
remembered locally until its ``Retry-After`` has passed, so a client over its limit
costs no Redis call either. The fleet as a whole never admits more than the policy:
every admitted request was granted by the script.

Redis unreachable (timeouts, the breaker open): each process falls back to the same
algorithm in memory, with the same policy per process (looser by the number of
processes, never a 5xx, never a Redis wait on every request).

Why not a library: ``limits`` (moving/fixed/sliding windows, async storage) has no GCRA
and costs a Redis round trip per hit; ``throttled-py`` has an async GCRA with a cost
argument, but also a round trip per hit and an all-or-nothing cost, where an allowance
must take "up to N". Either would put Redis on the path of every cached read, which the
cache exists to avoid; the script below is the whole of what they would do for us.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import Counter as PromCounter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.core.cache.breaker import CircuitBreaker
from services.core.telemetry.metric_batch import CounterTally, MetricBatch

log = logging.getLogger("stampede.ratelimit")

DECISIONS = PromCounter(
    "stampede_rate_limit_decisions",
    "Requests admitted or refused (429) by the rate limiter, per policy.",
    ["policy", "outcome"],
)
REDIS_ERRORS = PromCounter(
    "stampede_rate_limit_redis_errors",
    "Rate-limit Redis calls that failed or timed out (the process limited locally).",
)

# KEYS[1]: the TAT key. ARGV: emission interval (ms), tolerance (ms: burst x interval),
# requests wanted. Grants up to that many; returns granted, what remains of the burst
# after them, and (when nothing was granted) the milliseconds until one would be.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local granted = math.floor((now + tolerance - tat) / interval)
if granted > want then granted = want end
if granted < 0 then granted = 0 end
local new_tat = tat + granted * interval
if granted > 0 then
  redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX',
             math.ceil(new_tat - now) + 1000)
end
local remaining = math.floor((now + tolerance - new_tat) / interval)
local wait = 0
if granted == 0 then wait = tat + interval - tolerance - now end
return {granted, remaining, string.format('%.3f', wait)}
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """``burst`` requests at once, refilled at ``rate_per_s``."""

    name: str
    rate_per_s: float
    burst: int

    @property
    def interval_s(self) -> float:
        return 1.0 / self.rate_per_s

    @property
    def window_s(self) -> int:
        """The time a full burst takes to refill: the ``w`` of ``RateLimit-Policy``."""
        return max(1, math.ceil(self.burst / self.rate_per_s))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    # Seconds until a refused request would be admitted (0 when allowed).
    retry_after_s: float

    def reset_s(self, policy: Policy) -> int:
        """Seconds until the burst is whole again (the ``t`` of ``RateLimit``)."""
        if not self.allowed:
            return max(1, math.ceil(self.retry_after_s))
        return math.ceil((policy.burst - self.remaining) / policy.rate_per_s)


@dataclass(slots=True)
class _Allowance:
    tokens: int = 0
    remaining: int = 0
    expires: float = 0.0
    blocked_until: float = 0.0


@dataclass(slots=True)
class _LocalGcra:
    """The same algorithm in memory: the fallback while Redis cannot be asked."""

    tats: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def take(self, key: str, policy: Policy, now: float, max_keys: int) -> Decision:
        tolerance = policy.burst * policy.interval_s
        tat = max(self.tats.get(key, now), now)
        if tat + policy.interval_s - now > tolerance:
            return Decision(False, 0, tat + policy.interval_s - tolerance - now)
        tat += policy.interval_s
        self.tats[key] = tat
        self.tats.move_to_end(key)
        while len(self.tats) > max_keys:
            self.tats.popitem(last=False)
        return Decision(True, int((now + tolerance - tat) / policy.interval_s), 0.0)


Outcome = Literal["allowed", "limited"]


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        batch: int,
        allowance_ttl_s: float,
        op_timeout_s: float,
        breaker: CircuitBreaker,
        metrics: MetricBatch,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._script = redis.register_script(_GCRA)
        self._prefix = f"{namespace}:rl:"
        self._batch = batch
        self._ttl_s = allowance_ttl_s
        self._timeout = op_timeout_s
        self._breaker = breaker
        self._metrics = metrics
        self._max_keys = max_keys
        self._clock = clock
        self._allowances: OrderedDict[str, _Allowance] = OrderedDict()
        self._refills: dict[str, asyncio.Event] = {}
        self._fallback = _LocalGcra()
        self._tallies: dict[tuple[str, Outcome], CounterTally] = {}
        # This process's decisions, which tests read.
        self.counts: dict[tuple[str, Outcome], int] = {}

    async def check(self, policy: Policy, identity: str) -> Decision:
        key = f"{policy.name}:{identity}"
        while True:
            now = self._clock()
            allowance = self._allowances.get(key)
            if allowance is not None:
                if allowance.tokens > 0 and now < allowance.expires:
                    allowance.tokens -= 1
                    left = allowance.remaining + allowance.tokens
                    return self._count(policy, Decision(True, left, 0.0))
                if now < allowance.blocked_until:
                    return self._count(policy, Decision(False, 0, allowance.blocked_until - now))
            # One refill per key at a time: the requests that found the allowance spent
            # meanwhile wait for it rather than each asking Redis (and each overwriting
            # the allowance the others were granted).
            refill = self._refills.get(key)
            if refill is None:
                break
            await refill.wait()
        refill = self._refills[key] = asyncio.Event()
        try:
            decision = await self._from_redis(policy, key, now)
        finally:
            del self._refills[key]
            refill.set()
        return self._count(policy, decision)

    async def _from_redis(self, policy: Policy, key: str, now: float) -> Decision:
        if not self._breaker.allow():
            return self._fallback.take(key, policy, now, self._max_keys)
        # Enough for this process's share of an allowance's lifetime at the policy's rate
        # (at least ``batch``), so a busy key costs a Redis call per allowance, not per
        # few requests; never more than a tenth of the burst: other processes need theirs.
        lifetime_share = math.ceil(policy.rate_per_s * self._ttl_s)
        want = max(1, min(policy.burst // 10, max(self._batch, lifetime_share)))
        interval_ms = policy.interval_s * 1000
        try:
            async with asyncio.timeout(self._timeout):
                granted, remaining, wait_ms = await self._script(
                    keys=[self._prefix + key],
                    args=[f"{interval_ms:.3f}", f"{policy.burst * interval_ms:.3f}", want],
                )
        except (RedisError, OSError, TimeoutError) as error:
            self._breaker.failure()
            self._metrics.counter(REDIS_ERRORS).inc()
            log.debug("rate limit from local state (%r)", error)
            return self._fallback.take(key, policy, now, self._max_keys)
        self._breaker.success()
        allowance = self._allowances.get(key)
        if allowance is None:
            allowance = self._allowances[key] = _Allowance()
            while len(self._allowances) > self._max_keys:
                self._allowances.popitem(last=False)
        self._allowances.move_to_end(key)
        granted = int(granted)
        if granted == 0:
            wait_s = max(float(wait_ms) / 1000, 0.001)
            allowance.tokens, allowance.blocked_until = 0, now + wait_s
            return Decision(False, 0, wait_s)
        allowance.tokens = granted - 1
        allowance.remaining = int(remaining)
        allowance.expires = now + self._ttl_s
        allowance.blocked_until = 0.0
        return Decision(True, int(remaining) + granted - 1, 0.0)

    def _count(self, policy: Policy, decision: Decision) -> Decision:
        outcome: Outcome = "allowed" if decision.allowed else "limited"
        label = (policy.name, outcome)
        tally = self._tallies.get(label)
        if tally is None:
            tally = self._tallies[label] = self._metrics.counter(DECISIONS.labels(*label))
        tally.inc()
        self.counts[label] = self.counts.get(label, 0) + 1
        return decision
