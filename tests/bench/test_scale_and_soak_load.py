"""What the scale row and the soak send: keyset pages deep in the catalogue at any size,
and the soak's mix of reads, misses and new orders, each within the shop."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

from bench.wrk import wrk
from services.api.pagination import CURSOR_PATTERN, decode_cursor
from tests.bench.test_floors import uvicorn
from tests.bench.test_load import RECORDER, needs_wrk, recorded


def cursor(query: dict[str, list[str]]) -> int:
    value = query["cursor"][0]
    assert re.match(CURSOR_PATTERN, value), value
    return decode_cursor(value)


@needs_wrk
def test_deep_pages_are_in_the_second_half_of_the_catalogue(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with uvicorn(RECORDER, {"BENCH_RECORDER_FILE": str(log)}) as url:
        wrk(
            url,
            seconds=1,
            connections=4,
            threads=2,
            script="deep_page.lua",
            script_args=(100_000, 42),
        )
    requests = recorded(log)
    assert len(requests) > 10
    for request in requests:
        assert (request["method"], request["path"]) == ("GET", "/products")
        query = parse_qs(str(request["query"]))
        assert query["category"][0] in {f"cat{n}" for n in range(20)}
        assert 50_000 <= cursor(query) <= 99_600


@needs_wrk
def test_the_soak_mixes_reads_misses_and_new_orders_within_the_shop(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    users, products = 50, 30
    with uvicorn(RECORDER, {"BENCH_RECORDER_FILE": str(log)}) as url:
        wrk(
            url,
            seconds=2,
            connections=8,
            threads=2,
            script="mixed.lua",
            script_args=(users, products, 42, "soak1"),
            headers=("Authorization: Bearer k",),
        )
    requests = recorded(log)
    assert len(requests) > 500
    kinds: Counter[str] = Counter()
    keys = []
    for request in requests:
        headers = request["headers"]
        assert isinstance(headers, dict)
        assert headers["authorization"] == "Bearer k"
        path, query = str(request["path"]), parse_qs(str(request["query"]))
        if request["method"] == "POST":
            assert path == "/orders"
            keys.append(headers["idempotency-key"])
            order = json.loads(str(request["body"]))
            assert 1 <= order["user_id"] <= users
            lines = [item["product_id"] for item in order["items"]]
            assert len(set(lines)) == 2
            assert all(1 <= p <= products for p in lines)
            kinds["order"] += 1
        elif path == "/products" and "cursor" in query:
            assert 1 <= cursor(query) <= products
            kinds["miss"] += 1
        elif path == "/products":
            assert query["category"][0] in {f"cat{n}" for n in range(20)}
            kinds["list"] += 1
        else:
            match = re.fullmatch(r"/(products|users)/(\d+)(/orders)?", path)
            assert match is not None, path
            bound = products if match[1] == "products" else users
            assert 1 <= int(match[2]) <= bound
            kinds[match[1] + (match[3] or "")] += 1
    assert len(set(keys)) == len(keys)
    assert all(str(key).startswith("soak1-") for key in keys)
    shares = {kind: count / len(requests) for kind, count in kinds.items()}
    expected = {"list": 0.55, "products": 0.18, "users": 0.12, "users/orders": 0.02}
    expected |= {"miss": 0.10, "order": 0.03}
    for kind, share in expected.items():
        assert abs(shares[kind] - share) < 0.04, (kind, shares)
