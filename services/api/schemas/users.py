from __future__ import annotations

from datetime import datetime

from services.api.schemas.common import Email, Name, RequestSchema, ResponseSchema


class UserCreate(RequestSchema):
    email: Email
    name: Name


class UserPublic(ResponseSchema):
    id: int
    email: str
    name: str
    created_at: datetime
