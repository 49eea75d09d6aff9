"""Tell the api's response cache what the worker changed.

``GET /users/{id}/orders`` is cached with the tag ``cache_tags.user_orders(id)``; when the
worker moves an order's ``confirmation_status`` (sent, failed), that tag is invalidated
the way the api invalidates after its own writes, so the list shows the new status at
once instead of after its TTL. Best effort: with the cache Redis unreachable the entry simply
expires (the api's reads never depend on this).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from services.core.cache.invalidation import invalidate_now
from services.core.models import Order
from services.core.shop import cache_tags
from services.worker.runtime import WorkerResources

log = logging.getLogger(__name__)


def forget_user_orders(resources: WorkerResources, order_id: int) -> None:
    """Invalidate the cached order list of order ``order_id``'s user (looked up)."""
    try:
        with resources.engine.connect() as conn:
            user_id = conn.scalar(select(Order.user_id).where(Order.id == order_id))
    except SQLAlchemyError:
        log.warning("could not invalidate the cached orders of order %s", order_id, exc_info=True)
        return
    if user_id is not None:
        forget_orders_of_user(resources, user_id)


def forget_orders_of_user(resources: WorkerResources, user_id: int) -> None:
    """Invalidate user ``user_id``'s cached order list (no database round trip)."""
    forget_orders_of_users(resources, [user_id])


def forget_orders_of_users(resources: WorkerResources, user_ids: Iterable[int]) -> None:
    """Invalidate the cached order lists of ``user_ids`` (one call to the cache Redis)."""
    tags = [cache_tags.user_orders(user_id) for user_id in sorted(set(user_ids))]
    if not tags:
        return
    settings = resources.settings.cache
    try:
        invalidate_now(
            resources.cache_redis,
            namespace=settings.namespace,
            marker_ttl_s=settings.tag_marker_ttl_s,
            tags=tags,
        )
    except (RedisError, OSError):
        log.warning("could not invalidate the cached orders of users %s", tags, exc_info=True)
