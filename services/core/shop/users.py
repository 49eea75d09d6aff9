"""Users: registration (services flush; the caller's unit of work commits) and the lean
lookup (one Core statement run by the driver on a plain connection, no unit of work)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict, cast

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.core.db_reads import LeanRead
from services.core.errors import EmailTaken, NotFound
from services.core.models import User


async def create_user(session: AsyncSession, *, email: str, name: str) -> User:
    # ON CONFLICT instead of catching IntegrityError: a unique violation would abort the
    # whole transaction, and two concurrent sign-ups must give one 201 and one 409.
    statement = (
        insert(User)
        .values(email=email.lower(), name=name)
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User)
    )
    user = (await session.scalars(statement)).one_or_none()
    if user is None:
        raise EmailTaken(f"A user with email {email.lower()!r} already exists.")
    return user


class PublicUser(TypedDict):
    id: int
    email: str
    name: str
    created_at: datetime


# Compiled once, run by the driver itself (services.core.db_reads).
_PUBLIC_USER = LeanRead(
    select(User.id, User.email, User.name, User.created_at).where(User.id == bindparam("user_id"))
)


async def get_user(connection: AsyncConnection, user_id: int) -> PublicUser:
    """The user's public fields."""
    rows = await _PUBLIC_USER.fetch(connection, user_id=user_id)
    if not rows:
        raise NotFound(f"User {user_id} does not exist.")
    return cast(PublicUser, dict(rows[0]))
