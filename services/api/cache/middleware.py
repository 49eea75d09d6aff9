"""The response cache as pure ASGI middleware.

A GET for a cached route is answered from L1 before routing: the stored bytes, the
stored headers plus ``Age``, ``Cache-Control`` and ``X-Cache``, or a 304 when
``If-None-Match`` names the entry's ETag. Otherwise the route runs once for everyone
waiting on the key (see ``services.core.cache.tiered``) and its response is captured,
stored and sent.

``X-Cache`` says ``hit`` (L1, L2 or shared with a concurrent request), ``stale`` (expired
entry served while one request recomputes), ``stale-if-error`` (the database is
unreachable: the last entry kept, even an invalidated one) or ``miss`` (this request ran
the route).
Request ``Cache-Control: no-cache`` is deliberately not honoured: it would let any
client send every request to the database.
"""

from __future__ import annotations

import functools
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.cache.assembly import ApiCache
from services.core.cache import Entry
from services.core.cache.tiered import Computed, State

_STATE_VALUES: dict[State, bytes] = {
    "hit": b"hit",
    "stale": b"stale",
    "stale-if-error": b"stale-if-error",
    "miss": b"miss",
}


class ResponseCacheMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        resources = (scope.get("state") or {}).get("resources")
        cache: ApiCache | None = getattr(resources, "response_cache", None)
        headers = scope["headers"]
        resolved = (
            cache.routes.resolve(scope["path"], scope["query_string"], headers)
            if cache is not None
            else None
        )
        if cache is None or resolved is None:
            await self.app(scope, receive, send)
            return
        cached, path_params, key = resolved
        # The router has not run: label the request for the access log and metrics.
        scope["route"] = cached.route

        entry = cache.tiers.l1.get(key)
        if entry is not None:
            cache.tiers.metrics.hit(cached.template, "l1")
            await _send_entry(send, entry, b"hit", cached.policy.visibility, headers)
            return

        async def compute() -> Computed:
            status = 500
            response_headers: list[tuple[bytes, bytes]] = []
            chunks: list[bytes] = []

            async def capture(message: Message) -> None:
                nonlocal status, response_headers
                if message["type"] == "http.response.start":
                    status = message["status"]
                    response_headers = list(message.get("headers", []))
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            # The route renders identity bytes; the entry keeps its own gzip copy, made
            # once (the compression middleware inside must not encode what we store).
            identity_scope = {
                **scope,
                "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"],
            }
            await self.app(identity_scope, receive, capture)
            return Computed(status, response_headers, b"".join(chunks))

        outcome = await cache.tiers.fetch(key, cached.template, cached.policy, path_params, compute)
        if outcome.entry is not None:
            await _send_entry(
                send, outcome.entry, _STATE_VALUES[outcome.state], cached.policy.visibility, headers
            )
        elif outcome.computed is not None:
            await _send_computed(send, outcome.computed)


async def _send_entry(
    send: Send,
    entry: Entry,
    x_cache: bytes,
    visibility: str,
    request_headers: list[tuple[bytes, bytes]],
) -> None:
    use_gzip = False
    if_none_match = None
    for name, value in request_headers:
        if name == b"accept-encoding":
            use_gzip = entry.gzip_headers is not None and accepts_gzip(value)
        elif name == b"if-none-match":
            if_none_match = value
    # max-age is the freshness lifetime and Age what is used of it (RFC 9111 §4.2.3): a
    # client subtracts one from the other, and sees a stale-served entry as stale.
    dynamic = [
        (b"cache-control", _cache_control(visibility, int(entry.ttl_s))),
        (b"age", str(int(entry.age(time.monotonic()))).encode()),
        (b"x-cache", x_cache),
    ]
    if if_none_match is not None and etag_matches(if_none_match, entry):
        etag = entry.gzip_etag if use_gzip else entry.etag
        not_modified = [(b"etag", etag), (b"vary", entry.vary), *dynamic]
        await send({"type": "http.response.start", "status": 304, "headers": not_modified})
        await send({"type": "http.response.body", "body": b""})
        return
    if use_gzip and entry.gzip_headers is not None and entry.gzip_body is not None:
        base, body = entry.gzip_headers, entry.gzip_body
    else:
        base, body = entry.identity_headers, entry.body
    await send({"type": "http.response.start", "status": entry.status, "headers": base + dynamic})
    await send({"type": "http.response.body", "body": body})


async def _send_computed(send: Send, computed: Computed) -> None:
    headers = [*computed.headers, (b"x-cache", b"miss")]
    await send({"type": "http.response.start", "status": computed.status, "headers": headers})
    await send({"type": "http.response.body", "body": computed.body})


@functools.lru_cache(maxsize=256)  # a few visibilities x TTLs, from the route policies
def _cache_control(visibility: str, max_age: int) -> bytes:
    return f"{visibility}, max-age={max_age}".encode()


def accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (explicitly or by ``*``) with q > 0."""
    for part in accept_encoding.split(b","):
        coding, _, params = part.partition(b";")
        if coding.strip().lower() not in (b"gzip", b"*"):
            continue
        q = params.strip().lower()
        if q.startswith(b"q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def etag_matches(if_none_match: bytes, entry: Entry) -> bool:
    """RFC 9110 weak comparison, against either representation's ETag."""
    if if_none_match.strip() == b"*":
        return True
    candidates = {tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")}
    return entry.etag in candidates or entry.gzip_etag in candidates
