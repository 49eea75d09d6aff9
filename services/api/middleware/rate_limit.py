"""Rate limits in front of the response cache (a cached hit is still a request), after
the API key (a keyed request is limited per key, others per client IP).

Only the resource routes are limited, never health checks or the docs. Every answer of a
limited route carries the IETF ``RateLimit-Policy`` and ``RateLimit`` headers
(draft-ietf-httpapi-ratelimit-headers); a refusal is a 429 problem with ``Retry-After``.
The decision is ``services.core.rate_limit``'s: a local allowance most of the time. The
headers are queued for the outermost layer to add (``services.api.middleware.response_headers``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.middleware.api_key import PRINCIPAL_KEY
from services.api.middleware.response_headers import add_response_headers
from services.api.problems import error_response
from services.core.api_keys import Principal
from services.core.errors import TooManyRequests
from services.core.rate_limit import Decision, Policy, RateLimiter


class LimitedRoutes:
    """Whether a request goes to one of ``routes``, matched as the router would."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes: list[tuple[re.Pattern[str], frozenset[str]]] = [
            (regex, frozenset(methods))
            for route in routes
            if (regex := getattr(route, "path_regex", None)) is not None
            and (methods := getattr(route, "methods", None))
        ]
        self.covers = functools.lru_cache(maxsize=4096)(self._covers)

    def _covers(self, method: str, path: str) -> bool:
        return any(method in methods and regex.match(path) for regex, methods in self._routes)


def client_ip(scope: Scope, trusted_hops: int) -> str:
    """The TCP peer, or with ``trusted_hops`` proxies in front, the address the outermost
    of them saw (the ``trusted_hops``-th ``X-Forwarded-For`` entry from the right)."""
    peer = scope.get("client")
    address = peer[0] if peer else "-"
    if trusted_hops == 0:
        return address
    forwarded = [
        part.strip()
        for name, value in scope["headers"]
        if name == b"x-forwarded-for"
        for part in value.decode("latin-1").split(",")
    ]
    if len(forwarded) < trusted_hops:
        return address  # fewer hops than our proxies add: not through them
    candidate = forwarded[-trusted_hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return address


def policy_header(policy: Policy) -> tuple[bytes, bytes]:
    """``RateLimit-Policy``: the same for every answer under ``policy``."""
    return (b"ratelimit-policy", f'"{policy.name}";q={policy.burst};w={policy.window_s}'.encode())


def rate_limit_headers(policy: Policy, decision: Decision) -> list[tuple[bytes, bytes]]:
    return [
        policy_header(policy),
        (
            b"ratelimit",
            f'"{policy.name}";r={decision.remaining};t={decision.reset_s(policy)}'.encode(),
        ),
    ]


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limited: LimitedRoutes,
        per_key: Policy,
        per_ip: Policy,
        trusted_hops: int,
    ) -> None:
        self.app = app
        self.limited = limited
        self.per_key = per_key
        self.per_ip = per_ip
        self.trusted_hops = trusted_hops
        self._policy_headers = {per_key: policy_header(per_key), per_ip: policy_header(per_ip)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limited.covers(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = scope["state"]["resources"].rate_limiter
        principal: Principal | None = scope.get(PRINCIPAL_KEY)
        if principal is not None:
            policy, identity = self.per_key, principal.prefix
        else:
            policy, identity = self.per_ip, client_ip(scope, self.trusted_hops)
        decision = await limiter.check(policy, identity)
        headers = (
            self._policy_headers[policy],
            (
                b"ratelimit",
                f'"{policy.name}";r={decision.remaining};t={decision.reset_s(policy)}'.encode(),
            ),
        )
        if not add_response_headers(scope, headers):
            send = _with_headers(send, headers)

        if not decision.allowed:
            refusal = TooManyRequests(
                f"Over the {policy.name!r} rate limit; retry later.",
                retry_after_s=decision.retry_after_s,
                policy=policy.name,
            )
            await error_response(refusal, scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _with_headers(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    """``send`` adding ``headers``: for an app without the outermost layer that adds
    queued ones (``services.api.middleware.response_headers``)."""

    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return with_headers
