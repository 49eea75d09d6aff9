"""The OpenAPI document: every operation's success model and its problems."""

from __future__ import annotations

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
