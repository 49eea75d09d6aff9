"""Per-route cache policies, declared next to the route with :func:`cache_policy`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__stampede_cache_policy__"
# Tags travel space-separated through Lua and pub/sub: no spaces, nothing exotic.
TAG_PATTERN = re.compile(r"^[A-Za-z0-9:._{}-]{1,200}$")

BodyTags = Callable[[Any], Iterable[str]]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How one GET route is cached.

    ``tags`` are templates over the path parameters (``"product:{product_id}"``);
    ``body_tags`` derives more from the decoded JSON body (e.g. every product on a list
    page, so an order that changes one product's stock drops the pages showing it).
    ``params`` whitelists the query parameters that are part of the key: any other is
    ignored by the handler too, so it must not split (or bust) the cache. ``vary`` names
    request headers that change the response (they join the key and the ``Vary``
    header). ``visibility`` is what ``Cache-Control`` tells shared caches.
    """

    ttl_s: float
    stale_s: float = 0.0
    tags: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()
    visibility: Literal["public", "private"] = "public"
    body_tags: BodyTags | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or self.stale_s < 0:
            raise ValueError("ttl_s must be > 0 and stale_s >= 0")
        for tag in self.tags:
            if not TAG_PATTERN.match(tag):
                raise ValueError(f"bad tag template {tag!r}")
        object.__setattr__(self, "vary", tuple(sorted(h.lower() for h in self.vary)))
        object.__setattr__(self, "params", tuple(sorted(set(self.params))))

    def tags_for(self, path_params: Mapping[str, str], body: Any | None) -> tuple[str, ...]:
        tags = {template.format_map(path_params) for template in self.tags}
        if self.body_tags is not None and body is not None:
            tags.update(self.body_tags(body))
        bad = [tag for tag in tags if not TAG_PATTERN.match(tag)]
        if bad:
            raise ValueError(f"bad cache tags {bad!r}")
        return tuple(sorted(tags))


def cache_policy(policy: CachePolicy) -> Callable[[F], F]:
    """Attach ``policy`` to a route's endpoint; the api's route table picks it up.

    Put it *under* the ``@router.get`` decorator so the router registers the marked
    function.
    """

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, policy)
        return endpoint

    return mark


def policy_of(endpoint: Callable[..., Any]) -> CachePolicy | None:
    policy = getattr(endpoint, _ATTRIBUTE, None)
    return policy if isinstance(policy, CachePolicy) else None
