"""API keys for the tests: the server secret every test api runs with, and keys made
straight in its database (as ``python -m services.api.keys create`` makes them)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.api_keys import ALL_SCOPES, Scope, create_key
from services.core.db import create_session_factory

TEST_KEY_SECRET = "tests-only-api-key-secret-0123456789abcdef"


async def make_key(
    engine: AsyncEngine, scopes: Iterable[Scope] = ALL_SCOPES, *, name: str = "tests", **kw: object
) -> str:
    """A new key's token, committed; by default with every scope."""
    async with create_session_factory(engine)() as session, session.begin():
        token, _ = await create_key(
            session,
            TEST_KEY_SECRET.encode(),
            name=name,
            scopes=scopes,
            **kw,  # type: ignore[arg-type]
        )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
