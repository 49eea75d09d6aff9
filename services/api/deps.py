"""Request dependencies, as ``Annotated`` aliases for the routes, and the reads' connection
(a context manager the read routes enter themselves)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.api.resources import Resources
from services.core.cache import take_stale_tags
from services.core.telemetry.pool_metrics import check_out


# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def``
# dependency in the thread pool — a thread hand-off per request for an attribute read.
async def get_resources(request: Request) -> Resources:
    return cast(Resources, request.state.resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commit if the handler returned, else roll back.

    ``scope="function"`` (below) ends it before the response is sent, so a client never
    sees a 2xx for a transaction that then failed to commit. The cache tags the handler
    marked stale are invalidated after the commit (never before: a concurrent reader
    would re-cache the old rows) and before the response, so the writer reads its write.
    """
    async with resources.sessions() as session:
        await check_out(session.connection())
        try:
            yield session
        except BaseException:
            take_stale_tags(session)
            await session.rollback()
            raise
        else:
            await session.commit()
            tags = take_stale_tags(session)
            if tags:
                await resources.invalidator.invalidate(tags)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


class ReadConnection:
    """A connection for a route's reads: Core statements, no unit of work (no identity
    map, no flush, no commit). Whether they run inside a transaction is the read engine's
    decision (``services.core.db.create_read_engine``); one that was begun is rolled back
    when the connection returns to the pool.

    ``async with ReadConnection(request) as connection:`` in the route, not a dependency:
    FastAPI solves a generator dependency with an exit stack and an anyio cancel scope
    on every request, a fifth of an uncached point read's instructions (callgrind, the
    benchmark docs). The route returns the connection before its response is sent.
    """

    __slots__ = ("_connection",)

    def __init__(self, request: Request) -> None:
        resources: Resources = request.state.resources
        self._connection = resources.reads.connect()

    async def __aenter__(self) -> AsyncConnection:
        await check_out(self._connection.start())
        return self._connection

    async def __aexit__(self, *exc_info: object) -> None:
        await self._connection.close()
