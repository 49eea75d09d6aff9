"""Liveness and readiness for the kubelet and the load balancer."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from services.api.deps import ResourcesDep
from services.api.problems import problem_responses
from services.core.errors import Unavailable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, Literal["ok"]]


@router.get("/livez")
async def livez() -> Health:
    """The process is alive. Deliberately checks nothing else: a database outage must not
    make the kubelet restart every api pod."""
    return Health()


@router.get("/readyz", responses=problem_responses(503))
async def readyz(resources: ResourcesDep) -> Readiness:
    """Ready to serve: Postgres (through PgBouncer) and the cache Redis answer in time."""
    timeout = resources.settings.api.readiness_timeout_s

    async def database() -> None:
        async with resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def cache() -> None:
        await resources.cache_redis.ping()

    checks = {"database": database, "cache": cache}
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), timeout) for check in checks.values()),
        return_exceptions=True,
    )
    failed = {
        name: type(result).__name__
        for name, result in zip(checks, results, strict=True)
        if isinstance(result, BaseException)
    }
    if failed:
        raise Unavailable("Dependencies are not reachable.", failed_checks=failed)
    return Readiness(checks=dict.fromkeys(checks, "ok"))
