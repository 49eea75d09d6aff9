"""Request bodies as strict JSON, for every route that takes one.

FastAPI parses a body with ``json.loads`` on the raw bytes, which also accepts UTF-16
and UTF-32 (a UTF-16 body created a user), ``NaN`` and ``Infinity``, and answers
undecodable bytes or a nesting deep enough to exhaust the parser with a bare
``400 "There was an error parsing the body"``. Routes built with :class:`StrictJsonRoute`
instead:

* answer a body without a JSON media type (or with a charset other than UTF-8) with a
  415 problem, before it is parsed;
* parse it as RFC 8259 JSON: UTF-8 only, no ``NaN``/``Infinity``, at most
  ``MAX_DEPTH`` levels of arrays and objects. Anything else is malformed JSON, which
  FastAPI turns into its ``json_invalid`` validation error: a 422 problem, like every
  other body that is not what the schema describes.

The types inside are the schemas' business (strict, see ``services.api.schemas.common``).
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from services.api.problems import problem_responses
from services.core.errors import UnsupportedMediaType

# Our deepest schema (an order's items) nests three levels; the margin is for clients'
# formatting habits, not for data we would accept.
MAX_DEPTH = 32


class MalformedJson(json.JSONDecodeError):
    """Raised as ``json.loads`` would, so FastAPI reports it as it reports bad syntax."""


def _refuse_constant(name: str) -> object:
    raise MalformedJson(f"{name} is not JSON", name, 0)


def _depth(value: object) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        node, depth = level.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        level.extend((child, depth + 1) for child in node)
    return deepest


def parse_json(body: bytes) -> object:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedJson("The body is not UTF-8", "", error.start) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedJson(f"Nested deeper than {MAX_DEPTH} levels", "", 0) from None
    # Counting brackets runs in C; only a body that could be too deep is walked.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise MalformedJson(f"Nested deeper than {MAX_DEPTH} levels", "", 0)
    return value


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    charset = message.get_param("charset")
    return (
        message.get_content_maintype() == "application"
        and (subtype == "json" or subtype.endswith("+json"))
        and (charset is None or str(charset).lower() in ("utf-8", "utf8"))
    )


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class StrictJsonRoute(APIRoute):
    """An ``APIRoute`` whose body, if it takes one, is strict JSON (see the module)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.body_field is not None:
            self.responses = {**problem_responses(415), **self.responses}

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict_json(request: Request) -> Response:
            request = StrictJsonRequest(request.scope, request.receive)
            if not is_json_media_type(request.headers.get("content-type")) and (
                await request.body()
            ):
                raise UnsupportedMediaType(
                    "Send the body as application/json (UTF-8).",
                )
            return await handler(request)

        return strict_json
