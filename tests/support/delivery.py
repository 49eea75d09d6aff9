"""Checks of the confirmation pipeline as a client sees it: orders placed, emails that
arrive (and none that should not), statuses that change."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import httpx

from tests.support.factories import create_product, create_user, place_order
from tests.support.smtp import SmtpServer


def message_id(order_id: int) -> str:
    return f"<order-{order_id}.confirmation@stampede.dev>"


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            # Polling: the state lives in other processes (Postgres, the SMTP thread).
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not after {within}s: {what}") from None


async def emails(smtp: SmtpServer, count: int, within: float = 30) -> list[EmailMessage]:
    async def arrived() -> bool:
        return len(smtp.handler.accepted()) >= count

    await eventually(arrived, within, f"{count} email(s) accepted")
    return smtp.handler.accepted()


async def status_becomes(client: httpx.AsyncClient, order_id: int, status: str) -> None:
    async def check() -> bool:
        response = await client.get(f"/orders/{order_id}")
        return bool(response.json()["confirmation_status"] == status)

    await eventually(check, 30, f"order {order_id} confirmation {status}")


async def no_more_emails(smtp: SmtpServer, count: int, settle_s: float = 1.5) -> None:
    """Nothing else arrives for a while (a duplicate would come within seconds)."""
    await asyncio.sleep(settle_s)
    assert len(smtp.handler.accepted()) == count


async def new_order(client: httpx.AsyncClient) -> dict[str, object]:
    user = await create_user(client, "ada@example.com")
    lamp = await create_product(client, name="Desk Lamp", price_cents=1999, stock=5)
    response = await place_order(client, user["id"], [(lamp["id"], 1)])
    assert response.status_code == 201, response.text
    return dict(response.json())
