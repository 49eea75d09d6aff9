"""What every deployment of the API must do, whatever it runs on (see conftest)."""

from __future__ import annotations

import uuid

import httpx

PROBLEM = "application/problem+json"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def test_live_and_ready(contract_client: httpx.AsyncClient) -> None:
    assert (await contract_client.get("/livez")).json() == {"status": "ok"}
    ready = await contract_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"pooler": "ok"}


async def test_user_round_trip_and_duplicate(contract_client: httpx.AsyncClient) -> None:
    email = f"{unique('contract')}@example.com"
    created = await contract_client.post("/users", json={"email": email.upper(), "name": "C"})
    assert created.status_code == 201
    user = created.json()
    assert user["email"] == email
    assert (await contract_client.get(f"/users/{user['id']}")).json() == user
    again = await contract_client.post("/users", json={"email": email, "name": "D"})
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM


async def test_products_page_by_cursor(contract_client: httpx.AsyncClient) -> None:
    category = unique("cat")
    ids = []
    for index in range(3):
        response = await contract_client.post(
            "/products",
            json={"name": f"P{index}", "category": category, "price_cents": 100, "stock": 5},
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    first = (
        await contract_client.get("/products", params={"category": category, "limit": 2})
    ).json()
    assert [p["id"] for p in first["items"]] == ids[:2]
    rest = await contract_client.get(
        "/products", params={"category": category, "limit": 2, "cursor": first["next_cursor"]}
    )
    assert [p["id"] for p in rest.json()["items"]] == ids[2:]


async def test_order_is_placed_once_per_idempotency_key(contract_client: httpx.AsyncClient) -> None:
    user = await contract_client.post(
        "/users", json={"email": f"{unique('buyer')}@example.com", "name": "B"}
    )
    product = await contract_client.post(
        "/products",
        json={"name": "Lamp", "category": unique("cat"), "price_cents": 1999, "stock": 3},
    )
    body = {
        "user_id": user.json()["id"],
        "items": [{"product_id": product.json()["id"], "quantity": 2}],
    }
    headers = {"Idempotency-Key": unique("key")}
    placed = await contract_client.post("/orders", json=body, headers=headers)
    assert placed.status_code == 201
    assert placed.json()["total_cents"] == 3998
    replay = await contract_client.post("/orders", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == placed.json()["id"]
    oversold = await contract_client.post("/orders", json=body)
    assert oversold.status_code == 409
    fetched = await contract_client.get(f"/orders/{placed.json()['id']}")
    assert fetched.json()["items"] == placed.json()["items"]


async def test_errors_are_problem_details(contract_client: httpx.AsyncClient) -> None:
    missing = await contract_client.get("/users/999999999")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["request_id"] == missing.headers["x-request-id"]
    invalid = await contract_client.post("/users", json={"email": "not-an-email"})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == PROBLEM
