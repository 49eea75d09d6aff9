"""Every error rendered in one place as RFC 9457 ``application/problem+json``.

Covers our own error tree (``services.core.errors``), FastAPI's validation errors
(wrong types, missing fields, malformed JSON: always 422, never 500), Starlette's HTTP
errors (404 for unknown paths, 405, 413 from the body limit) and, last, anything
unexpected (500, logged with its traceback, no internals in the body).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from services.core.db import CONNECTION_ERRORS, is_outage
from services.core.errors import PROBLEM_BASE, DatabaseUnavailable, StampedeError, Unavailable
from services.core.telemetry.logs import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger("stampede.errors")


class InvalidParam(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(examples=[PROBLEM_BASE + "not-found"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[InvalidParam] | None = Field(
        None, description="Per-field validation errors (422 only)."
    )


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_response(
    status: int,
    *,
    type_: str,
    title: str,
    detail: str | None,
    instance: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = instance
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    return ProblemResponse(jsonable_encoder(body), status_code=status, headers=headers)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the problem schema for each status."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def error_response(exc: StampedeError, instance: str) -> ProblemResponse:
    """The problem for one of our errors; also for the middleware outside FastAPI."""
    if exc.status >= 500 and not isinstance(exc, Unavailable):
        log.error("unhandled service error", exc_info=exc)
    return problem_response(
        exc.status,
        type_=exc.type,
        title=exc.title,
        detail=exc.detail,
        instance=instance,
        headers=exc.headers() or None,
        **exc.extensions,
    )


async def _stampede_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StampedeError)
    return error_response(exc, request.url.path)


async def _database_error(request: Request, exc: Exception) -> ProblemResponse:
    """A database outage is a 503 to retry, answered here rather than by the catch-all:
    that one re-raises to the server, which then closes the client's keep-alive
    connection — and the client's next request, maybe a cached read, fails too."""
    if not is_outage(exc):
        raise exc  # a bug or bad data: on to the catch-all (500, logged once outside)
    log.warning("database unreachable: %s: %s", type(exc).__name__, exc)
    unavailable = DatabaseUnavailable("The database cannot be reached right now; retry.")
    return error_response(unavailable, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": _message(error), "type": error["type"]}
        for error in exc.errors()
    ]
    return problem_response(
        422,
        type_=PROBLEM_BASE + "validation-error",
        title="The request is not valid",
        detail="; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
        instance=request.url.path,
        errors=errors,
    )


def _message(error: Mapping[str, Any]) -> str:
    # FastAPI reports every JSON syntax error as "JSON decode error"; say which.
    reason = (error.get("ctx") or {}).get("error") if error["type"] == "json_invalid" else None
    return f"JSON decode error: {reason}" if reason else str(error.get("msg", ""))


# The methods a 405's ``Allow`` may name; probing each is cheap next to a 405's rarity.
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at the request's path (Starlette's 405 names only
    the first route's), with HEAD wherever GET is (``services.api.middleware.head``).

    Routes are asked through ``matches``, the public interface that FastAPI's included
    routers implement too."""
    methods = {
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routes)
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, HTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request.app.router.routes, request.scope))
    return problem_response(
        exc.status_code,
        type_="about:blank",
        title=phrase,
        detail=detail,
        instance=request.url.path,
        headers=headers or None,
    )


def internal_error_response(instance: str) -> ProblemResponse:
    """The 500 for anything unexpected: no internals in the body (they are logged)."""
    return problem_response(
        500,
        type_=PROBLEM_BASE + "internal-error",
        title="Internal server error",
        detail=None,
        instance=instance,
    )


async def _unexpected_error(request: Request, exc: Exception) -> ProblemResponse:
    # Not logged here: the error goes on to the observation middleware, which logs
    # every unexpected error once, whichever layer answered it.
    return internal_error_response(request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StampedeError, _stampede_error)
    for outage in (DBAPIError, *CONNECTION_ERRORS):
        app.add_exception_handler(outage, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
