"""The order transaction as the api runs it for ``POST /orders`` with an Idempotency-Key,
on one raw asyncpg connection: the api's own two statements (:mod:`bench.floors.sql`),
with the same parameters, inside BEGIN ... COMMIT.

What the api does around the statements (FastAPI, validation, the session, the cache
invalidation after commit) is left out on purpose: that is what the floor measures the
api against. Refusals are answered with a bare status, not problem+json.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json, to_json

from bench.floors.sql import PLACE_ORDER, RECORD_RESPONSE
from services.core.models import ConfirmationStatus, OrderStatus
from services.core.outbox import SEND_ORDER_CONFIRMATION


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


async def place_order(connection: Any, *, key: str, body: bytes) -> Answer:
    """Place the order in ``body`` (``{"user_id": .., "items": [{"product_id", "quantity"}]}``)
    under Idempotency-Key ``key``."""
    request = from_json(body)
    user_id: int = request["user_id"]
    lines: list[tuple[int, int]] = [(i["product_id"], i["quantity"]) for i in request["items"]]
    wanted = Counter[int]()
    for product_id, quantity in lines:
        wanted[product_id] += quantity
    product_ids = sorted(wanted)
    arguments = PLACE_ORDER.arguments(
        key=key,
        fingerprint=hashlib.sha256(body).hexdigest(),
        user_id=user_id,
        wanted_ids=product_ids,
        wanted_qtys=[wanted[p] for p in product_ids],
        line_ids=[p for p, _ in lines],
        line_qtys=[q for _, q in lines],
        status=OrderStatus.PLACED.value,
        confirmation_status=ConfirmationStatus.PENDING.value,
        task=SEND_ORDER_CONFIRMATION,
    )
    async with connection.transaction():
        row = await connection.fetchrow(PLACE_ORDER.text, *arguments)
        if not row["claimed"]:
            return Answer(409, b"")
        if not row["user_known"] or row["unknown_ids"]:
            return Answer(422, b"")
        if row["short_ids"]:
            return Answer(409, b"")
        prices = row["unit_prices_cents"]
        answer = to_json(
            {
                "id": row["id"],
                "user_id": user_id,
                "status": OrderStatus.PLACED.value,
                "confirmation_status": ConfirmationStatus.PENDING.value,
                "total_cents": row["total_cents"],
                "created_at": row["created_at"],
                "items": [
                    {"product_id": p, "quantity": q, "unit_price_cents": price}
                    for (p, q), price in zip(lines, prices, strict=True)
                ],
            }
        )
        await connection.execute(
            RECORD_RESPONSE.text,
            *RECORD_RESPONSE.arguments(
                order_id=row["id"], status=201, body=answer.decode(), key=key
            ),
        )
    return Answer(201, answer)
