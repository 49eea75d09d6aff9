from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from services.api.access import requires
from services.api.deps import SessionDep
from services.api.problems import problem_responses
from services.api.routing import ApiRoute
from services.api.schemas.common import MAX_BIGINT
from services.api.schemas.orders import OrderCreate, OrderPublic
from services.core.api_keys import Scope
from services.core.shop import orders, placement
from services.core.shop.placement import IdempotencyClaim, OrderLine, StoredResponse

router = APIRouter(prefix="/orders", tags=["orders"], route_class=ApiRoute)

OrderId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retry-safe creation: a repeated key returns the original answer.",
    ),
]

JSON = "application/json"


def _fingerprint(body: OrderCreate) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


@router.post(
    "",
    status_code=201,
    response_model=OrderPublic,
    responses=problem_responses(409, 413, 422),
)
@requires(Scope.ORDERS_WRITE)
async def create_order(
    body: OrderCreate,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Place an order: stock is checked and decremented atomically, all or nothing."""
    claim = (
        None if idempotency_key is None else IdempotencyClaim(idempotency_key, _fingerprint(body))
    )
    placed = await placement.place_order(
        session,
        user_id=body.user_id,
        lines=[OrderLine(item.product_id, item.quantity) for item in body.items],
        idempotency=claim,
    )
    if isinstance(placed, StoredResponse):
        return Response(
            placed.body,
            status_code=placed.status,
            media_type=JSON,
            headers={"Idempotent-Replayed": "true"},
        )
    answer = StoredResponse(status=201, body=OrderPublic.model_validate(placed).model_dump_json())
    if claim is not None:
        await placement.record_idempotent_response(session, claim.key, placed.id, answer)
    return Response(answer.body, status_code=answer.status, media_type=JSON)


@router.get("/{order_id}", responses=problem_responses(404, 422))
@requires(Scope.ORDERS_READ)
async def get_order(order_id: OrderId, session: SessionDep) -> OrderPublic:
    return OrderPublic.model_validate(await orders.get_order(session, order_id))
