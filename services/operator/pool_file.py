"""The ``pool.ini`` each sidecar ``%include``s: the value a restarting PgBouncer reads."""

from __future__ import annotations

import re

_SETTING = re.compile(r"^\s*(default_pool_size|max_db_connections)\s*=\s*(\d+)\s*$", re.MULTILINE)


def render(pool_size: int) -> str:
    return f"default_pool_size = {pool_size}\nmax_db_connections = {pool_size}\n"


def parse(text: str | None) -> int | None:
    """The pool size ``text`` sets; None unless it sets both keys to the same size (a file
    written by someone else is then rewritten in full)."""
    if text is None:
        return None
    values = dict(_SETTING.findall(text))
    sizes = {values.get("default_pool_size"), values.get("max_db_connections")}
    if len(sizes) != 1 or None in sizes:
        return None
    return int(sizes.pop() or 0)
