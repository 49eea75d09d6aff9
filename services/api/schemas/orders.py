from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from services.api.schemas.common import Id, RequestSchema, ResponseSchema
from services.core.models import ConfirmationStatus, OrderStatus

MAX_ITEMS_PER_ORDER = 50
MAX_QUANTITY = 1000


class OrderItemCreate(RequestSchema):
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


class OrderCreate(RequestSchema):
    user_id: Id
    items: Annotated[list[OrderItemCreate], Field(min_length=1, max_length=MAX_ITEMS_PER_ORDER)]


class OrderItemPublic(ResponseSchema):
    product_id: int
    quantity: int
    unit_price_cents: int


class OrderPublic(ResponseSchema):
    id: int
    user_id: int
    status: OrderStatus
    confirmation_status: ConfirmationStatus
    total_cents: int
    created_at: datetime
    items: list[OrderItemPublic]
