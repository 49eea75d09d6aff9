"""Types shared by the resource schemas: bounded ids, safe text, pages.

Every constraint the code enforces is one the OpenAPI document states (a length, a
bound, a pattern): a client that follows the schema is never refused, and a fuzzer that
generates from it finds no gap between the two.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Postgres bigint/integer bounds: a larger value can never be stored, so it is a 422 at
# the edge instead of a driver overflow (a 500) deep inside.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1

Id = Annotated[int, Field(ge=1, le=MAX_BIGINT)]

# The whitespace text is trimmed of, named explicitly: `\s` means different sets to
# Python, to pydantic's Rust regex engine and to a JSON Schema (ECMA) validator.
_SPACE = " \t\n\r"
# Postgres text cannot hold NUL, and a name must have something besides whitespace.
_TEXT_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"


def _trimmed(value: str) -> str:
    return value.strip(_SPACE)


# The length limits the client's text, before trimming, as the schema says.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=_TEXT_PATTERN),
    AfterValidator(_trimmed),
]
Category = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=_TEXT_PATTERN),
    AfterValidator(_trimmed),
]

# Plain ASCII addresses: a dot-atom local part (RFC 5322) at a domain of LDH labels with
# an alphabetic top-level label. Deliberately a pattern rather than email-validator's
# rules, so the schema can state exactly what is accepted.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=EMAIL_PATTERN),
    Field(description="An ASCII address; stored in lower case, unique case-insensitively."),
]

T = TypeVar("T")


class RequestSchema(BaseModel):
    """Request bodies refuse unknown fields (a typo is an error, not a silent no-op) and
    take JSON types strictly: `true` is not an integer, `"5"` is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ResponseSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )
