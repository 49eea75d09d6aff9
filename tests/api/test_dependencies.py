"""Every endpoint and dependency is async: FastAPI runs a plain ``def`` in the thread
pool, a thread hand-off per request (two such dependencies cost 15 % of the uncached
read's throughput)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.api.routes import health, orders, products, users


def _calls(dependant: Dependant) -> Iterator[object]:
    if dependant.call is not None:
        yield dependant.call
    for dependency in dependant.dependencies:
        yield from _calls(dependency)


def test_no_endpoint_or_dependency_runs_in_the_thread_pool() -> None:
    # The routers' own routes (the app wraps included routers in private classes).
    routers = (health.router, users.router, products.router, orders.router)
    routes = [route for router in routers for route in router.routes]
    assert routes
    assert all(isinstance(route, APIRoute) for route in routes)
    sync = {
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        if isinstance(route, APIRoute)
        for call in _calls(route.dependant)
        if not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))
    }
    assert not sync
