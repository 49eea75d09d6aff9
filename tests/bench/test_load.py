"""What the load generators send: every order new (its own Idempotency-Key, two distinct
products), random users within the shop; the open loop sends what it offers."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from pathlib import Path

import pytest

from bench.open_loop import offer
from bench.workload import Shop, new_order_body, new_order_request
from bench.wrk import wrk
from devstack.servers import LOCALHOST
from tests.bench.test_floors import uvicorn

RECORDER = "tests.bench.recorder:app"
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk: `make bench` installs it")


def recorded(path: Path) -> list[dict[str, object]]:
    """The load's requests (not the readiness probe's ``GET /``)."""
    requests = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in requests if r["path"] != "/"]


@needs_wrk
def test_wrk_orders_are_each_new(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with uvicorn(RECORDER, {"BENCH_RECORDER_FILE": str(log)}) as url:
        wrk(
            url,
            seconds=1,
            connections=4,
            threads=2,
            script="new_orders.lua",
            script_args=(50, 3, 42, "run1"),
        )
    requests = recorded(log)
    assert len(requests) > 10
    keys = [r["headers"]["idempotency-key"] for r in requests]  # type: ignore[index]
    assert len(set(keys)) == len(keys)
    assert all(str(key).startswith("run1-") for key in keys)
    for request in requests:
        assert (request["method"], request["path"]) == ("POST", "/orders")
        order = json.loads(str(request["body"]))
        assert 1 <= order["user_id"] <= 50
        products = [item["product_id"] for item in order["items"]]
        assert len(set(products)) == 2
        assert all(1 <= p <= 3 for p in products)


@needs_wrk
def test_wrk_reads_random_users_within_the_shop(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with uvicorn(RECORDER, {"BENCH_RECORDER_FILE": str(log)}) as url:
        wrk(
            url,
            seconds=1,
            connections=4,
            threads=2,
            script="random_user.lua",
            script_args=(20, 42, "/users/%d/orders"),
        )
    paths = {str(r["path"]) for r in recorded(log)}
    ids = {int(p.split("/")[2]) for p in paths}
    assert all(p.endswith("/orders") for p in paths)
    assert len(ids) > 5
    assert ids <= set(range(1, 21))


def test_the_open_loop_sends_what_it_offers(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    rng = random.Random(1)
    shop = Shop(users=5, products=4)

    def request(n: int) -> bytes:
        return new_order_request(new_order_body(rng, shop), f"k{n}", LOCALHOST)

    with uvicorn(RECORDER, {"BENCH_RECORDER_FILE": str(log)}) as url:
        port = int(url.rsplit(":", 1)[1])
        report = asyncio.run(
            offer(LOCALHOST, port, rate=40, seconds=0.5, request=request, expect=201)
        )
    assert report.failed == 0
    assert len(report.latencies_ms) == 20
    keys = [r["headers"]["idempotency-key"] for r in recorded(log)]  # type: ignore[index]
    assert sorted(keys) == sorted(f"k{n}" for n in range(20))
