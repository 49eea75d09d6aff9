"""schemathesis hooks (named in ``schemathesis.toml``); each says why it exists."""

from __future__ import annotations

from typing import Any

import schemathesis


def _has_integral_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_has_integral_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_integral_float(v) for v in value)
    return False


@schemathesis.hook
def filter_body(context: schemathesis.HookContext, body: Any) -> bool:
    """Skip bodies with a number like ``4.0`` where the schema says integer.

    JSON Schema counts 4.0 as an integer; the api, by issue #14's decision and pydantic's
    strict mode, refuses a number written with a fraction where an integer is expected
    (``"product_id": 4.0`` is a 422, like ``true`` and ``"4"``). No schema keyword can
    state that, so such bodies are not generated; tests/api/test_strict_input.py checks
    the refusal. Our request bodies hold no non-integer numbers, so nothing else is lost.
    """
    return not _has_integral_float(body)
