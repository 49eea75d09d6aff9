from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, model_validator

from services.api.schemas.common import MAX_INT, Category, Name, RequestSchema, ResponseSchema

PriceCents = Annotated[int, Field(ge=0, le=MAX_INT, description="Price in cents.")]
Stock = Annotated[int, Field(ge=0, le=MAX_INT)]


class ProductCreate(RequestSchema):
    name: Name
    category: Category
    price_cents: PriceCents
    stock: Stock


class ProductUpdate(RequestSchema):
    """A partial update: only the fields present are changed; at least one is required."""

    name: Name | None = None
    category: Category | None = None
    price_cents: PriceCents | None = None
    stock: Stock | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ProductUpdate:
        if not self.model_fields_set:
            raise ValueError("at least one field is required")
        if any(getattr(self, field) is None for field in self.model_fields_set):
            raise ValueError("fields may be omitted but not set to null")
        return self


class ProductPublic(ResponseSchema):
    id: int
    name: str
    category: str
    price_cents: int
    stock: int
    updated_at: datetime
