"""Floor: bare ASGI + raw asyncpg running the api's own SQL (``bench.floors.sql``), under
the same gunicorn + uvicorn setup as the api. What the api's routes could reach if
everything between the socket and the driver cost nothing.

* ``GET /users/{id}``: the point read, one statement outside a transaction;
* ``GET /users/{id}/orders``: the first page of the user's orders, one statement;
* ``POST /orders``: the order transaction (``bench.floors.order_write``);
* ``GET /``: 200, for readiness.

``STAMPEDE_BENCH_DSN`` names the database (Postgres itself or PgBouncer). Each worker
keeps a pool as large as the api's (``db.pool_size + db.max_overflow``) with asyncpg's
statement cache on, as the api runs behind PgBouncer 1.24.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

import asyncpg
from pydantic_core import to_json

from bench.floors.order_write import place_order
from bench.floors.sql import POINT_READ, USER_ORDERS
from services.core.settings import Settings

Message = MutableMapping[str, Any]
PAGE_SIZE = 20  # the api's default ``limit``
_JSON = [(b"content-type", b"application/json")]


def _user(row: Any) -> bytes:
    return to_json({"id": row[0], "email": row[1], "name": row[2], "created_at": row[3]})


def _orders(rows: list[Any]) -> bytes:
    items = [
        {
            "id": row["id"],
            "user_id": row["user_id"],
            "status": row["status"],
            "confirmation_status": row["confirmation_status"],
            "total_cents": row["total_cents"],
            "created_at": row["created_at"],
            "items": [
                {"product_id": p, "quantity": q, "unit_price_cents": c}
                for p, q, c in zip(
                    row["product_ids"], row["quantities"], row["unit_prices_cents"], strict=True
                )
            ],
        }
        for row in rows[:PAGE_SIZE]
        if row["id"] is not None
    ]
    # The cursor's value is not the floor's business: the api's is a few bytes of base64.
    cursor = str(items[-1]["id"]) if len(rows) > PAGE_SIZE else None
    return to_json({"items": items, "next_cursor": cursor})


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes = b"") -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Message, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class RawAsyncpgFloor:
    def __init__(self) -> None:
        self.pool: Any = None

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        if method == "GET" and parts[0] == "users" and len(parts) in {2, 3}:
            await self._user_read(send, int(parts[1]), orders=len(parts) == 3)
        elif method == "POST" and parts == ["orders"]:
            key = _header(scope, b"idempotency-key")
            if key is None:
                await _answer(send, 422)
                return
            body = await _body(receive)
            async with self.pool.acquire() as connection:
                answer = await place_order(connection, key=key, body=body)
            await _answer(send, answer.status, answer.body)
        else:
            await _answer(send, 200 if parts == [""] else 404)

    async def _user_read(self, send: Any, user_id: int, *, orders: bool) -> None:
        if orders:
            arguments = USER_ORDERS.arguments(user_id=user_id, limit=PAGE_SIZE + 1)
            rows = await self.pool.fetch(USER_ORDERS.text, *arguments)
            body = _orders(rows) if rows else None
        else:
            row = await self.pool.fetchrow(POINT_READ.text, *POINT_READ.arguments(user_id=user_id))
            body = _user(row) if row else None
        if body is None:
            await _answer(send, 404)
        else:
            await _answer(send, 200, body)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "lifespan.shutdown":
            db = Settings().db
            self.pool = await asyncpg.create_pool(
                os.environ["STAMPEDE_BENCH_DSN"],
                min_size=db.pool_size,
                max_size=db.pool_size + db.max_overflow,
            )
            await send({"type": "lifespan.startup.complete"})
        await self.pool.close()
        await send({"type": "lifespan.shutdown.complete"})


app = RawAsyncpgFloor()
