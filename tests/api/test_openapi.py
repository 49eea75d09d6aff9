"""The OpenAPI document: every operation's success model and its problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

PROBLEM = "application/problem+json"


async def test_openapi_documents_models_and_problems(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "Problem" in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok = [code for code in operation["responses"] if code.startswith("2")]
            assert ok, (method, path)
            assert operation["responses"][ok[0]]["content"]["application/json"]["schema"], (
                method,
                path,
            )
            errors = [code for code in operation["responses"] if code[0] in "45"]
            assert errors, (method, path)
            for code in errors:
                content = operation["responses"][code]["content"]
                assert PROBLEM in content, (method, path, code)
    assert (await client.get("/docs")).status_code == 200


# The routes that render their own bytes (services.api.rendering) and declare their
# schema with ``response_model=``. The expected document is main's before they did,
# extracted from its /openapi.json (each operation's responses and every schema they
# reference): rendering bytes directly must not change what clients are promised.
# Changed since only on purpose: strict input added 414/431 to every operation and made
# the cursor a pattern (a bad one is a 422, so the lists' 400 is gone); API keys added
# 401/403 to the private reads; rate limits added 429 to every resource route.
LEAN_READS = [
    ("/users/{user_id}", "get"),
    ("/users/{user_id}/orders", "get"),
    ("/products", "get"),
    ("/products/{product_id}", "get"),
]
DOCUMENTED_BEFORE = Path(__file__).with_name("openapi_read_responses.json")


def _referenced(node: object, schemas: dict[str, Any], found: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                name = value.rsplit("/", 1)[1]
                if name not in found:
                    found[name] = schemas[name]
                    _referenced(found[name], schemas, found)
            else:
                _referenced(value, schemas, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, schemas, found)


async def test_lean_reads_document_the_same_responses_as_before(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    responses = {
        f"{method.upper()} {path}": spec["paths"][path][method]["responses"]
        for path, method in LEAN_READS
    }
    schemas: dict[str, Any] = {}
    _referenced(responses, spec["components"]["schemas"], schemas)
    expected = json.loads(DOCUMENTED_BEFORE.read_text())
    assert responses == expected["responses"]
    assert schemas == expected["schemas"]
