"""The route class of every resource router: strict JSON bodies, the access rule of
:func:`services.api.access.requires` stated in the OpenAPI document (the security
requirement with its scope, and the 401/403 problems), and the 429 of the rate limit
that covers every resource route (``services.api.middleware.rate_limit``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.api.access import SECURITY_SCHEME, required_scope
from services.api.problems import problem_responses
from services.api.request_body import StrictJsonRoute


class ApiRoute(StrictJsonRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.responses = {**problem_responses(429), **self.responses}
        scope = required_scope(endpoint)
        if scope is not None:
            self.responses = {**problem_responses(401, 403), **self.responses}
            self.openapi_extra = {
                **(self.openapi_extra or {}),
                "security": [{SECURITY_SCHEME: [scope.value]}],
            }
            if self.description:
                self.description += "\n\n"
            self.description += f"Needs an API key with the scope `{scope.value}`."
