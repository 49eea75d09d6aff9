"""The response cache's tags for the shop's data, named once for every reader and writer.

Cached GET routes declare which tags their responses carry; the shop services mark the
tags a write makes stale (``stale_on_commit``), and the worker invalidates the tags its
own writes touch. All of them spell the tags through these functions, so a route and the
write that must drop it can never disagree on a string.

Each function also builds a route's tag *template* when given the path parameter's
placeholder (``product("{product_id}")`` is ``"product:{product_id}"``).
"""

from __future__ import annotations

# Every product list page (a new product, or one moving between categories, changes
# which pages exist and what they show).
PRODUCT_LISTS = "products"


def product(product_id: int | str) -> str:
    """One product: its own page, and every list page that shows it."""
    return f"product:{product_id}"


def user(user_id: int | str) -> str:
    return f"user:{user_id}"


def user_orders(user_id: int | str) -> str:
    """A user's order list (its items, totals and confirmation status)."""
    return f"user:{user_id}:orders"
