from __future__ import annotations

import subprocess
import sys

from services.core.cache.keys import cache_key, canonical_query

ALLOWED = ("category", "cursor", "limit")


def key_for(query: bytes, **path_params: str) -> str:
    return cache_key(
        "ns",
        method="GET",
        template="/products",
        path_params=path_params,
        query=canonical_query(query, ALLOWED),
        vary=[],
        policy_version=1,
    )


def test_parameter_order_and_unknown_parameters_do_not_matter() -> None:
    assert key_for(b"category=cat3&limit=5") == key_for(b"limit=5&category=cat3")
    assert key_for(b"category=cat3") == key_for(b"category=cat3&utm_source=x&_=123")
    assert key_for(b"category=cat3") != key_for(b"category=cat4")
    assert key_for(b"") == key_for(b"nothing=here")


def test_a_repeated_parameter_keeps_its_last_value_as_fastapi_does() -> None:
    assert key_for(b"limit=5&limit=10") == key_for(b"limit=10")
    assert key_for(b"limit=10&limit=5") != key_for(b"limit=10")


def test_values_are_quoted_so_separators_cannot_collide() -> None:
    assert key_for(b"category=a%26limit%3D5") != key_for(b"category=a&limit=5")


def test_keys_are_readable_and_versioned() -> None:
    key = key_for(b"category=cat3")
    assert key.startswith("ns:e:/products:")
    other_version = cache_key(
        "ns",
        method="GET",
        template="/products",
        path_params={},
        query=canonical_query(b"category=cat3", ALLOWED),
        vary=[],
        policy_version=2,
    )
    assert other_version != key


SCRIPT = """
from services.core.cache.keys import cache_key, canonical_query
print(cache_key("stampede:http:v1", method="GET", template="/products/{product_id}",
    path_params={"product_id": "42"}, query=canonical_query(b"b=2&a=1", ("a", "b")),
    vary=[("accept-language", "de")], policy_version=1), hash("salted"))
"""


def test_the_same_request_gives_the_same_key_under_any_hash_seed() -> None:
    outputs = []
    for seed in ("1", "2", "random"):
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        )
        outputs.append(result.stdout.split())
    keys = {key for key, _ in outputs}
    salted = {salted for _, salted in outputs}
    assert len(keys) == 1, keys
    # The control: Python's hash() does differ between those interpreters.
    assert len(salted) == 3
