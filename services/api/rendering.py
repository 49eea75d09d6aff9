"""Responses serialized once: pydantic-core turns the rows a route read into its response
schema's JSON bytes, with no ``jsonable_encoder`` and no second validation by FastAPI.

A route that answers this way declares the schema with ``response_model=`` (FastAPI
documents it, and passes a returned ``Response`` through untouched) and builds a
:class:`JsonBody` for it once, at import.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import TypeAdapter
from starlette.responses import Response

JSON = "application/json"

T = TypeVar("T")


class JsonBody(Generic[T]):
    def __init__(self, schema: type[T]) -> None:
        self._adapter = TypeAdapter(schema)

    def response(self, data: object) -> Response:
        """``data`` (a row, or a mapping of the schema's fields; nested values alike) as
        ``schema``: built in one pass, in Rust, and written straight out as JSON."""
        value = self._adapter.validate_python(data, from_attributes=True)
        return Response(self._adapter.dump_json(value), media_type=JSON)
