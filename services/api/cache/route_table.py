"""Which requests the response cache answers, found before routing.

The middleware runs before the router, so it matches paths itself against the same
routes in the same order (the first route whose path matches and which allows GET wins,
as in Starlette); only routes whose endpoint carries a
:func:`services.core.cache.cache_policy` are cached. It is given the routers' own
``APIRoute`` objects (``create_app`` passes them): FastAPI's included-router wrappers
resolve routes lazily through private classes, which we do not want to depend on.

Path parameters are canonicalized by their declared type, so ``/products/042`` and
``/products/42`` share a key and, above all, a tag (``product:42``) that invalidation
can name; a value the type would refuse bypasses the cache and gets the route's own 422.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from services.core.cache import CachePolicy, cache_key, policy_of
from services.core.cache.keys import canonical_query

Canonical = Callable[[str], str | None]
_DIGITS = re.compile(r"[0-9]{1,19}")


def _as_int(value: str) -> str | None:
    return str(int(value)) if _DIGITS.fullmatch(value) else None


def _as_str(value: str) -> str | None:
    return value


@dataclass(frozen=True, slots=True)
class CachedRoute:
    route: APIRoute
    policy: CachePolicy
    canonical: Mapping[str, Canonical]
    namespace: str

    @property
    def template(self) -> str:
        return self.route.path

    def path_params(self, match: re.Match[str]) -> dict[str, str] | None:
        params = {}
        for name, raw in match.groupdict().items():
            value = self.canonical.get(name, _as_str)(raw)
            if value is None:
                return None
            params[name] = value
        return params

    def key(
        self,
        path_params: Mapping[str, str],
        query_string: bytes,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> str:
        vary: list[tuple[str, str]] = []
        for header in self.policy.vary:
            wanted = header.encode("latin-1")
            value = next((v for n, v in headers if n == wanted), b"")
            vary.append((header, value.decode("latin-1")))
        return cache_key(
            self.namespace,
            method="GET",
            template=self.template,
            path_params=path_params,
            query=canonical_query(query_string, self.policy.params),
            vary=vary,
            policy_version=self.policy.version,
        )


def _cached_route(route: APIRoute, policy: CachePolicy, namespace: str) -> CachedRoute:
    declared = {param.name for param in route.dependant.query_params}
    unknown = set(policy.params) - declared
    if unknown:
        raise ValueError(f"{route.path}: cache policy names unknown query params {unknown}")
    canonical: dict[str, Canonical] = {}
    for param in route.dependant.path_params:
        canonical[param.name] = _as_int if param.field_info.annotation is int else _as_str
    return CachedRoute(route=route, policy=policy, canonical=canonical, namespace=namespace)


# Requests resolved to (route, params, key) and remembered: routing by regex, parsing the
# query and hashing the key cost more than the rest of a hit. Bounded, because paths and
# query strings are the client's; distinct ones past this just take the slow way.
RESOLVED_MAX = 4096

Resolved = tuple[CachedRoute, Mapping[str, str], str]


class RouteTable:
    def __init__(self, routes: Sequence[BaseRoute], namespace: str) -> None:
        self._resolve = functools.lru_cache(maxsize=RESOLVED_MAX)(self._resolve_uncached)
        self._candidates: list[tuple[re.Pattern[str], CachedRoute | None]] = []
        for route in routes:
            regex = getattr(route, "path_regex", None)
            methods = getattr(route, "methods", None)
            if regex is None or (methods is not None and "GET" not in methods):
                continue
            policy = policy_of(route.endpoint) if isinstance(route, APIRoute) else None
            cached = None
            if policy is not None and isinstance(route, APIRoute):
                cached = _cached_route(route, policy, namespace)
            self._candidates.append((regex, cached))

    @property
    def cached(self) -> list[CachedRoute]:
        return [cached for _, cached in self._candidates if cached is not None]

    def resolve(
        self, path: str, query_string: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> Resolved | None:
        """The cached route for a GET, its canonical path params and the cache key;
        None when the request is not one the cache answers."""
        resolved = self._resolve(path, query_string)
        if resolved is None or not resolved[0].policy.vary:
            return resolved
        cached, params, _ = resolved
        return cached, params, cached.key(params, query_string, headers)

    def _resolve_uncached(self, path: str, query_string: bytes) -> Resolved | None:
        matched = self.match(path)
        if matched is None:
            return None
        cached, params = matched
        # With Vary headers, ``resolve`` recomputes the key from the request's headers.
        return cached, params, cached.key(params, query_string, ())

    def match(self, path: str) -> tuple[CachedRoute, dict[str, str]] | None:
        for regex, cached in self._candidates:
            found = regex.match(path)
            if found is None:
                continue
            if cached is None:
                return None
            params = cached.path_params(found)
            return None if params is None else (cached, params)
        return None
