"""The ``pool.ini`` each sidecar ``%include``s: the value a restarting PgBouncer reads."""

from __future__ import annotations

import re

_DEFAULT_POOL_SIZE = re.compile(r"^\s*default_pool_size\s*=\s*(\d+)\s*$", re.MULTILINE)


def render(pool_size: int) -> str:
    return f"default_pool_size = {pool_size}\nmax_db_connections = {pool_size}\n"


def parse(text: str | None) -> int | None:
    """The pool size ``text`` sets, or None when it sets none."""
    if text is None:
        return None
    match = _DEFAULT_POOL_SIZE.search(text)
    return int(match.group(1)) if match else None
