"""The error tree. Each error knows its HTTP status and RFC 9457 problem type.

    StampedeError                 500  unexpected; never raised for bad input
    ├── BadRequest                400  the request is malformed
    ├── Unauthenticated           401  no API key where one is required; WWW-Authenticate
    │   └── InvalidApiKey         (malformed, unknown, revoked or expired)
    ├── Forbidden                 403  the key may not do this; WWW-Authenticate
    │   └── InsufficientScope     (it lacks the route's scope)
    ├── NotFound                  404  a path resource does not exist
    ├── Conflict                  409  the request clashes with the current state
    │   ├── EmailTaken
    │   └── InsufficientStock
    ├── PayloadTooLarge           413  the body exceeds the configured limit
    ├── UriTooLong                414  the request target exceeds the configured limit
    ├── UnsupportedMediaType      415  a body that is not JSON (or not UTF-8)
    ├── TooManyRequests           429  over a rate limit; answered with Retry-After
    ├── HeadersTooLarge           431  too many header bytes, or too many headers
    ├── Unprocessable             422  well-formed but semantically wrong
    │   ├── UnknownReference      (the body names a user/product that does not exist)
    │   └── IdempotencyKeyReused  (same key, different request)
    └── Unavailable               503  a dependency is down; answered with Retry-After
        └── DatabaseUnavailable   (Postgres or the pooler cannot be reached)

Services raise these; ``services.api.problems`` renders every one of them, and every
framework error, as ``application/problem+json`` in one place.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

PROBLEM_BASE = "https://stampede.dev/problems/"


class StampedeError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def headers(self) -> dict[str, str]:
        """Response headers the error implies (``Retry-After``, ``WWW-Authenticate``)."""
        return {}


class BadRequest(StampedeError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


# RFC 6750 §3: every 401/403 names the scheme; the error codes tell a client whether a
# new key (invalid_token) or a key with more scopes (insufficient_scope) would help.
BEARER_REALM = 'Bearer realm="stampede"'


class Unauthenticated(StampedeError):
    status = 401
    slug = "unauthenticated"
    title = "An API key is required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": BEARER_REALM}


class InvalidApiKey(Unauthenticated):
    slug = "invalid-api-key"
    title = "The API key is not valid"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'{BEARER_REALM}, error="invalid_token"'}


class Forbidden(StampedeError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class InsufficientScope(Forbidden):
    slug = "insufficient-scope"
    title = "The API key lacks the scope this needs"

    def headers(self) -> dict[str, str]:
        scope = self.extensions.get("scope", "")
        return {"WWW-Authenticate": f'{BEARER_REALM}, error="insufficient_scope", scope="{scope}"'}


class NotFound(StampedeError):
    status = 404
    slug = "not-found"
    title = "Resource not found"


class Conflict(StampedeError):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class EmailTaken(Conflict):
    slug = "email-taken"
    title = "Email address already registered"


class InsufficientStock(Conflict):
    slug = "insufficient-stock"
    title = "Not enough stock"


class PayloadTooLarge(StampedeError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class UriTooLong(StampedeError):
    status = 414
    slug = "uri-too-long"
    title = "Request target too long"


class UnsupportedMediaType(StampedeError):
    status = 415
    slug = "unsupported-media-type"
    title = "The body must be JSON"


class TooManyRequests(StampedeError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: float, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        # Whole seconds, rounded up: retrying at the advertised time must succeed.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class HeadersTooLarge(StampedeError):
    status = 431
    slug = "headers-too-large"
    title = "Request header fields too large"


class Unprocessable(StampedeError):
    status = 422
    slug = "validation-error"
    title = "The request is not valid"


class UnknownReference(Unprocessable):
    slug = "unknown-reference"
    title = "The request refers to something that does not exist"


class IdempotencyKeyReused(Unprocessable):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key was already used for a different request"


class Unavailable(StampedeError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"
    # Seconds a client should wait before retrying (the Retry-After header).
    retry_after_s: ClassVar[int] = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class DatabaseUnavailable(Unavailable):
    slug = "database-unavailable"
    title = "The database cannot be reached"
    retry_after_s = 2
