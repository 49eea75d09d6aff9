from __future__ import annotations

from services.core.cache.entry import Entry, build_entry
from services.core.cache.l1 import LocalCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry(clock: Clock, *tags: str, ttl_s: float = 60) -> Entry:
    return build_entry(
        status=200,
        content_type=b"application/json",
        body=b"{}",
        tags=tags,
        ttl_s=ttl_s,
        stale_s=0,
        now=clock.now,
        compress_min_bytes=1024,
        gzip_level=5,
    )


def test_bounded_lru_reports_evictions_per_route() -> None:
    clock, evicted = Clock(), []
    cache = LocalCache(max_entries=2, ttl_s=10, on_evict=evicted.append, clock=clock)
    cache.put("a", "/a", entry(clock), epoch=0)
    cache.put("b", "/b", entry(clock), epoch=0)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", "/c", entry(clock), epoch=0)
    assert evicted == ["/b"]
    assert cache.get("b") is None
    assert len(cache) == 2


def test_entries_live_for_the_l1_ttl_or_their_freshness_whichever_is_shorter() -> None:
    clock = Clock()
    cache = LocalCache(max_entries=10, ttl_s=2, clock=clock)
    cache.put("long", "/r", entry(clock, ttl_s=60), epoch=0)
    cache.put("short", "/r", entry(clock, ttl_s=1), epoch=0)
    clock.now += 1.5
    assert cache.get("short") is None
    assert cache.get("long") is not None
    clock.now += 1
    assert cache.get("long") is None


def test_drop_tags_removes_tagged_entries_only() -> None:
    clock = Clock()
    cache = LocalCache(max_entries=10, ttl_s=2, clock=clock)
    cache.put("p42", "/p", entry(clock, "product:42"), epoch=0)
    cache.put("list", "/l", entry(clock, "products", "product:42"), epoch=0)
    cache.put("p7", "/p", entry(clock, "product:7"), epoch=0)
    cache.drop_tags(["product:42"])
    assert cache.get("p42") is None
    assert cache.get("list") is None
    assert cache.get("p7") is not None


def test_an_entry_read_before_an_invalidation_is_not_kept() -> None:
    clock = Clock()
    cache = LocalCache(max_entries=10, ttl_s=2, clock=clock)
    epoch = cache.epoch  # a lookup starts...
    cache.drop_tags(["product:1"])  # ...an invalidation arrives meanwhile...
    assert not cache.put("k", "/p", entry(clock, "product:1"), epoch=epoch)
    assert cache.get("k") is None
