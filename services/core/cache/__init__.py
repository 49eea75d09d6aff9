"""The HTTP response cache: policies, canonical keys, entries, the two tiers and
tag invalidation. The ASGI side (route matching, serving) lives in ``services.api``.

Why no library: cashews (and aiocache, fastapi-cache2) were evaluated first. cashews has
early/soft TTL, locks, tags and a client-side L1, but (1) its FastAPI integration is
``BaseHTTPMiddleware`` and its unit is a pickled function result, while we must answer
before routing from stored bytes; (2) its tags are Redis sets of keys deleted on
invalidation: a set evicted by the LRU cache Redis silently loses invalidations, and
nothing stops a recomputation that read the database before the write from storing
afterwards (the commit/invalidate race); (3) its locks and early refresh are per
function call, not one recomputation shared by the waiting requests of a process; (4)
its hot path (middleware chain, serializer, key templating) costs more than the whole
hit budget of this cache (a dict lookup and two ASGI messages). What we keep from
libraries: redis-py for the client, pub/sub and Lua script caching; gzip from the
standard library. What is hand-written is small: a bounded L1 (``l1.py``), a circuit
breaker (``breaker.py``), and three Lua scripts (``redis_tier.py``).
"""

from services.core.cache.counters import CacheCounters, CacheMetrics
from services.core.cache.entry import Entry
from services.core.cache.invalidation import TagInvalidator, stale_on_commit, take_stale_tags
from services.core.cache.keys import SCHEMA_VERSION, cache_key
from services.core.cache.policy import CachePolicy, cache_policy, policy_of

__all__ = [
    "SCHEMA_VERSION",
    "CacheCounters",
    "CacheMetrics",
    "CachePolicy",
    "Entry",
    "TagInvalidator",
    "cache_key",
    "cache_policy",
    "policy_of",
    "stale_on_commit",
    "take_stale_tags",
]
