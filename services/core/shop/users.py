"""Users: registration and lookup. Services flush; the caller's unit of work commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

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


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.")
    return user


async def user_exists(session: AsyncSession, user_id: int) -> bool:
    found = await session.scalar(select(User.id).where(User.id == user_id))
    return found is not None
