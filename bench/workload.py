"""What the load asks for: random seeded users and products of the local stack's shop,
and orders that are each new (their own Idempotency-Key, two distinct products).

The closed-loop runs draw them in Lua (``bench/lua/``); the open-loop run draws them
here, the same way.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

SEED = 42


@dataclass(frozen=True)
class Shop:
    """The ids to draw from: users 1..users, products 1..products (as seeded)."""

    users: int
    products: int


def new_order_body(rng: random.Random, shop: Shop) -> bytes:
    """A random user's order of one each of two distinct random products."""
    first, second = rng.sample(range(1, shop.products + 1), 2)
    order = {
        "user_id": rng.randint(1, shop.users),
        "items": [{"product_id": first, "quantity": 1}, {"product_id": second, "quantity": 1}],
    }
    return json.dumps(order, separators=(",", ":")).encode()


def new_order_request(body: bytes, key: str, host: str, authorization: str = "") -> bytes:
    """``POST /orders`` as raw HTTP/1.1 bytes, keeping the connection open;
    ``authorization``: an ``Authorization`` header line's value (orders need a key)."""
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    head = (
        f"POST /orders HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
