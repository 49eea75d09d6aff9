"""Which routes need an API key, and with which scope.

A route says so with :func:`requires` on its endpoint (next to its cache policy). The
API-key middleware reads it before routing (``services.api.middleware.api_key``), the
route class documents it in OpenAPI (``services.api.routing``). Routes without it are
public: the catalogue reads, health, the docs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from services.core.api_keys import Scope

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__stampede_scope__"

# The OpenAPI security scheme every private route names.
SECURITY_SCHEME = "ApiKey"
SECURITY_SCHEMES = {
    SECURITY_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "stk_<prefix>_<secret>",
        "description": "An API key, sent as `Authorization: Bearer <key>`. Each private "
        "operation names the scope it needs; `admin` grants every scope.",
    }
}


def requires(scope: Scope) -> Callable[[F], F]:
    """Mark an endpoint as needing a key with ``scope``."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, scope)
        return endpoint

    return mark


def required_scope(endpoint: Callable[..., Any]) -> Scope | None:
    scope: Scope | None = getattr(endpoint, _ATTRIBUTE, None)
    return scope
