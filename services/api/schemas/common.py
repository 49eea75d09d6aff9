"""Types shared by the resource schemas: bounded ids, safe text, pages."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Postgres bigint/integer bounds: a larger value can never be stored, so it is a 422 at
# the edge instead of a driver overflow (a 500) deep inside.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1

Id = Annotated[int, Field(ge=1, le=MAX_BIGINT)]


def _no_nul(value: str) -> str:
    # Postgres text cannot hold NUL; refusing it here keeps it a 422 instead of a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]
Category = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_no_nul),
]

T = TypeVar("T")


class RequestSchema(BaseModel):
    """Request bodies refuse unknown fields: a typo is an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class ResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )
