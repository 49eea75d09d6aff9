"""Enqueueing work for the worker through the transactional outbox.

The api never talks to the broker: it adds an outbox row in the transaction of the change
that needs the work, so the work exists if and only if the change committed. The worker's
relay publishes committed rows; the task names below are the contract between the two.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from services.core.models import OutboxMessage

# Celery task names (the worker registers its tasks under these).
SEND_ORDER_CONFIRMATION = "stampede.orders.send_confirmation"
# What the relay publishes for several SEND_ORDER_CONFIRMATION rows at once: one task, one
# SMTP session (the worker's own contract with the relay; outbox rows never name it).
SEND_ORDER_CONFIRMATIONS = "stampede.orders.send_confirmations"

# NOTIFY channel an outbox insert signals at commit (trigger in migration 0002).
OUTBOX_CHANNEL = "stampede_outbox"


def enqueue(session: AsyncSession, task: str, payload: Mapping[str, object]) -> OutboxMessage:
    """Add an outbox row to the session's transaction (the caller flushes or commits)."""
    message = OutboxMessage(task=task, payload=dict(payload))
    session.add(message)
    return message
