from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from services.api.access import requires
from services.api.deps import ReadConnection, SessionDep
from services.api.pagination import Cursor, Limit, cursor_id, page
from services.api.problems import problem_responses
from services.api.rendering import JsonBody
from services.api.routing import ApiRoute
from services.api.schemas.common import MAX_BIGINT, Page
from services.api.schemas.orders import OrderPublic
from services.api.schemas.users import UserCreate, UserPublic
from services.core.api_keys import Scope
from services.core.cache import CachePolicy, cache_policy
from services.core.shop import cache_tags, orders, users

router = APIRouter(prefix="/users", tags=["users"], route_class=ApiRoute)

UserId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]

_USER = JsonBody(UserPublic)
_ORDERS = JsonBody(Page[OrderPublic])


@router.post("", status_code=201, responses=problem_responses(409, 413, 422))
@requires(Scope.USERS_WRITE)
async def create_user(body: UserCreate, session: SessionDep) -> UserPublic:
    user = await users.create_user(session, email=str(body.email), name=body.name)
    return UserPublic.model_validate(user)


@router.get("/{user_id}", response_model=UserPublic, responses=problem_responses(404, 422))
@requires(Scope.USERS_READ)
@cache_policy(
    CachePolicy(ttl_s=60, stale_s=30, tags=(cache_tags.user("{user_id}"),), visibility="private")
)
async def get_user(user_id: UserId, request: Request) -> Response:
    async with ReadConnection(request) as connection:
        user = await users.get_user(connection, user_id)
    return _USER.response(user)


@router.get(
    "/{user_id}/orders",
    response_model=Page[OrderPublic],
    responses=problem_responses(404, 422),
)
@cache_policy(
    CachePolicy(
        ttl_s=30,
        stale_s=15,
        tags=(cache_tags.user_orders("{user_id}"),),
        params=("limit", "cursor"),
        visibility="private",
    )
)
@requires(Scope.ORDERS_READ)
async def list_user_orders(
    user_id: UserId,
    request: Request,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    """The user's orders, newest first, each with its items."""
    async with ReadConnection(request) as connection:
        found, last_id = await orders.list_user_orders(
            connection, user_id=user_id, before_id=cursor_id(cursor), limit=limit
        )
    return _ORDERS.response(page(found, last_id))
