from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from services.api.schemas.common import MAX_INT, Category, Name, RequestSchema, ResponseSchema

PriceCents = Annotated[int, Field(ge=0, le=MAX_INT, description="Price in cents.")]
Stock = Annotated[int, Field(ge=0, le=MAX_INT)]


class ProductCreate(RequestSchema):
    name: Name
    category: Category
    price_cents: PriceCents
    stock: Stock


def _partial_update_schema(schema: dict[str, Any]) -> None:
    """Document what ``_not_empty`` enforces: at least one field, none of them null.

    The fields are ``X | None`` only so that "absent" can be told apart in Python; null
    is refused, so the schema offers just ``X``.
    """
    schema["minProperties"] = 1
    for field in schema["properties"].values():
        choices = field.pop("anyOf", None)
        if choices is not None:
            field.update(next(choice for choice in choices if choice.get("type") != "null"))
        field.pop("default", None)


class ProductUpdate(RequestSchema):
    """A partial update: only the fields present are changed; at least one is required."""

    model_config = ConfigDict(json_schema_extra=_partial_update_schema)

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
