from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr, Field

from services.api.schemas.common import Name, RequestSchema, ResponseSchema


class UserCreate(RequestSchema):
    email: EmailStr = Field(max_length=320)
    name: Name


class UserPublic(ResponseSchema):
    id: int
    email: str
    name: str
    created_at: datetime
