"""Security headers on every answer, and the docs pages without a CDN."""

from __future__ import annotations

import httpx
import pytest

from tests.support.factories import create_product, create_user


async def test_every_answer_is_nosniff(client: httpx.AsyncClient) -> None:
    for path in ["/products", "/livez", "/nope", "/users/1", "/openapi.json"]:
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path


async def test_private_answers_are_never_stored_by_shared_caches(
    client: httpx.AsyncClient,
) -> None:
    user = await create_user(client)
    created = await client.post("/users", json={"email": "b@example.com", "name": "B"})
    assert created.headers["cache-control"] == "no-store"
    refused = await client.get(f"/users/{user['id']}", headers={"Authorization": ""})
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "no-store"
    # The response cache's own policy for private entries: the browser only.
    read = await client.get(f"/users/{user['id']}")
    assert read.headers["cache-control"].startswith("private, max-age=")
    product = await create_product(client)
    public = await client.get(f"/products/{product['id']}", headers={"Authorization": ""})
    assert public.headers["cache-control"].startswith("public")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_packaged_assets(client: httpx.AsyncClient, page: str) -> None:
    html = (await client.get(page)).text
    assert "/docs-assets/" in html
    for outside in ["cdn.jsdelivr.net", "fonts.googleapis.com", "unpkg.com", "https://"]:
        assert outside not in html, (page, outside)
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"]:
        response = await client.get(f"/docs-assets/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 10_000
