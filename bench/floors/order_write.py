"""The order transaction as the api runs it for ``POST /orders`` with an Idempotency-Key,
on one raw asyncpg connection: the statements of :class:`bench.floors.sql.OrderWrite`, in
the same order, with the same parameters, inside BEGIN ... COMMIT.

What the api does around the statements (FastAPI, validation, the ORM's unit of work,
the cache invalidation after commit) is left out on purpose: that is what the floor
measures the api against. Conflicts are answered with a bare status, not problem+json.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic_core import from_json, to_json

from bench.floors.sql import OrderWrite
from services.core.outbox import SEND_ORDER_CONFIRMATION


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@cache
def _statements(items: int) -> OrderWrite:
    return OrderWrite(items)


async def place_order(connection: Any, *, key: str, body: bytes) -> Answer:
    """Place the order in ``body`` (``{"user_id": .., "items": [{"product_id", "quantity"}]}``)
    under Idempotency-Key ``key``; every product at most once."""
    request = from_json(body)
    user_id: int = request["user_id"]
    lines: list[tuple[int, int]] = [(i["product_id"], i["quantity"]) for i in request["items"]]
    wanted = Counter[int]()
    for product_id, quantity in lines:
        wanted[product_id] += quantity
    if len(wanted) != len(lines):
        return Answer(422, b"")
    sql = _statements(len(lines))
    product_ids = sorted(wanted)
    fingerprint = hashlib.sha256(body).hexdigest()
    async with connection.transaction():
        if await connection.fetchval(sql.claim_key, key, fingerprint) is None:
            return Answer(409, b"")
        if await connection.fetchval(sql.user_exists, user_id) is None:
            return Answer(422, b"")
        found = {row[0]: row for row in await connection.fetch(sql.lock_products, *product_ids)}
        if len(found) != len(product_ids) or any(found[p][2] < wanted[p] for p in product_ids):
            return Answer(409, b"")
        await connection.fetch(sql.take_stock, product_ids, [wanted[p] for p in product_ids])
        prices = {p: found[p][1] for p in product_ids}
        total = sum(quantity * prices[product_id] for product_id, quantity in lines)
        order_id, created_at = await connection.fetchrow(
            sql.insert_order, user_id, "placed", "pending", total
        )
        item_parameters = [
            value
            for product_id, quantity in lines
            for value in (order_id, product_id, quantity, prices[product_id])
        ]
        await connection.fetch(sql.insert_items, *item_parameters)
        await connection.fetchrow(
            sql.enqueue_confirmation,
            SEND_ORDER_CONFIRMATION,
            json.dumps({"order_id": order_id}),
            None,
            0,
            None,
            None,
            None,
        )
        answer = to_json(
            {
                "id": order_id,
                "user_id": user_id,
                "status": "placed",
                "confirmation_status": "pending",
                "total_cents": total,
                "created_at": created_at,
                "items": [
                    {"product_id": p, "quantity": q, "unit_price_cents": prices[p]}
                    for p, q in lines
                ],
            }
        )
        await connection.execute(sql.record_response, order_id, 201, answer.decode(), key)
    return Answer(201, answer)
