"""Liveness and readiness for the kubelet and the load balancer.

Readiness means "send this pod traffic": the process answers and its own connection
path to the database (the PgBouncer sidecar it talks to) accepts connections. Postgres
and the cache Redis are shared by every pod: when one of them is down, all pods are
equally affected, and taking them all out of the Service would turn answers the api can
still give (cached reads; 503 problems with Retry-After for the rest) into connection
errors at the load balancer. So a shared dependency never makes a pod unready; a pod
whose own sidecar is gone does, while the other pods serve.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from services.api.deps import ResourcesDep
from services.api.problems import problem_responses
from services.core.errors import Unavailable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, Literal["ok"]]


@functools.cache
def _pooler_address(database_url: str) -> tuple[str, int]:
    url = make_url(database_url)
    return url.host or "127.0.0.1", url.port or 5432


@router.get("/livez")
async def livez() -> Health:
    """The process is alive. Deliberately checks nothing else: a database outage must not
    make the kubelet restart every api pod."""
    return Health()


@router.get("/readyz", responses=problem_responses(503))
async def readyz(resources: ResourcesDep) -> Readiness:
    """Ready for traffic: the connection pooler this process sends its SQL to accepts a
    connection in time. Shared dependencies are not checked (see the module docstring)."""
    host, port = _pooler_address(resources.settings.database_url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), resources.settings.api.readiness_timeout_s
        )
    except (OSError, TimeoutError) as error:
        raise Unavailable(
            "The database pooler is not reachable.",
            failed_checks={"pooler": type(error).__name__},
        ) from None
    writer.close()
    await writer.wait_closed()
    return Readiness(checks={"pooler": "ok"})
