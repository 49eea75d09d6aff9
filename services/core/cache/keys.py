"""Canonical cache keys: the same request gives the same key in every process.

The key material is explicit text (method, route template, canonical path and query
parameters, Vary header values, schema and policy versions) hashed with BLAKE2b, a
stable digest. Never Python's ``hash()``: it is salted per interpreter
(``PYTHONHASHSEED``), so workers, pods and restarts would disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

# Bump when the stored response format or the response schemas change incompatibly:
# old entries are then simply never looked up again (and age out of the LRU Redis).
SCHEMA_VERSION = 1


def canonical_query(query_string: bytes, allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """Whitelisted parameters, sorted by name. A repeated parameter keeps its last
    value, as Starlette's ``QueryParams`` (and so FastAPI) does for a scalar."""
    if not query_string or not allowed:
        return []
    last: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in allowed:
            last[name] = value
    return sorted(last.items())


def cache_key(
    namespace: str,
    *,
    method: str,
    template: str,
    path_params: Mapping[str, str],
    query: list[tuple[str, str]],
    vary: list[tuple[str, str]],
    policy_version: int,
) -> str:
    """``<namespace>:e:<route template>:<digest>``; the template keeps keys readable."""
    parts = [
        f"v{SCHEMA_VERSION}.{policy_version}",
        method,
        template,
        "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(path_params.items())),
        "&".join(f"{quote(k)}={quote(v)}" for k, v in query),
        "&".join(f"{quote(k)}={quote(v)}" for k, v in vary),
    ]
    digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()
    return f"{namespace}:e:{template}:{digest}"
