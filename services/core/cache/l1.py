"""The in-process tier: a bounded LRU with a short TTL and a tag index.

Hand-written rather than ``cachetools.TTLCache``: it needs a tag index (to drop entries
on an invalidation broadcast), an eviction hook per route (metrics) and the
``epoch`` guard below, which together are most of this module.

``epoch`` grows with every invalidation this process applies. A caller that read an
entry from L2 (or computed one) passes the epoch it saw *before* the read to
:meth:`put`; if an invalidation arrived in between, the entry may predate it and is not
kept. Without this, a broadcast that overtakes a slow L2 read would be undone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from services.core.cache.entry import Entry


class LocalCache:
    def __init__(
        self,
        *,
        max_entries: int,
        ttl_s: float,
        on_evict: Callable[[str], None] = lambda route: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.epoch = 0
        self._on_evict = on_evict
        self._clock = clock
        # key -> (expires at, route, entry)
        self._items: OrderedDict[str, tuple[float, str, Entry]] = OrderedDict()
        self._by_tag: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            self._remove(key)
            return None
        self._items.move_to_end(key)
        return item[2]

    def put(self, key: str, route: str, entry: Entry, *, epoch: int) -> bool:
        """Keep ``entry`` until its freshness or the L1 TTL ends, whichever is first."""
        if epoch != self.epoch:
            return False
        now = self._clock()
        expires = min(now + self.ttl_s, entry.born + entry.ttl_s)
        if expires <= now:
            return False
        if key in self._items:
            self._remove(key)
        self._items[key] = (expires, route, entry)
        for tag in entry.tags:
            self._by_tag.setdefault(tag, set()).add(key)
        while len(self._items) > self.max_entries:
            oldest = next(iter(self._items))
            self._on_evict(self._items[oldest][1])
            self._remove(oldest)
        return True

    def drop_tags(self, tags: Iterable[str]) -> None:
        self.epoch += 1
        for tag in tags:
            for key in self._by_tag.pop(tag, ()):
                self._remove(key)

    def clear(self) -> None:
        self.epoch += 1
        self._items.clear()
        self._by_tag.clear()

    def _remove(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is None:
            return
        for tag in item[2].tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]
