"""The bench's pure parts: reading wrk's report, percentiles, ratios and verdicts, the
table, the orders it sends and its options."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from bench import cpu
from bench.__main__ import parse_args
from bench.open_loop import percentile, status_and_length
from bench.report import Row, table
from bench.targets import Target, ratio
from bench.workload import Shop, new_order_body, new_order_request
from bench.wrk import parse

WRK_REPORT = """\
Running 10s test @ http://127.0.0.1:41234
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    3.01ms  61.20ms   88.10%
    Req/Sec     6.31k   712.44     7.80k    70.00%
  Latency Distribution
     50%    4.50ms
     75%    6.01ms
     90%    8.30ms
     99%    1.20s
  125600 requests in 10.00s, 30.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 100
Requests/sec:  12560.00
Transfer/sec:      3.01MB
"""


def test_wrk_report_is_read_with_its_units() -> None:
    report = parse(WRK_REPORT)
    assert report.requests == 125600
    assert report.seconds == 10.0
    assert report.p50_ms == 4.5
    assert report.p99_ms == 1200.0
    assert (report.failed, report.socket_errors, report.errors) == (100, 5, 105)
    # Failed answers are not throughput.
    assert report.rps == 12550.0


def test_a_clean_wrk_report_has_no_errors() -> None:
    clean = "\n".join(
        line for line in WRK_REPORT.splitlines() if not line.lstrip().startswith(("Socket", "Non"))
    )
    report = parse(clean.replace("99%    1.20s", "99%  850.00us"))
    assert report.errors == 0
    assert report.p99_ms == 0.85


def test_a_minute_long_run_is_read_in_minutes() -> None:
    report = parse(WRK_REPORT.replace("in 10.00s,", "in 1.00m,"))
    assert report.seconds == 60.0


def test_a_report_without_latencies_is_refused() -> None:
    with pytest.raises(ValueError, match="50%"):
        parse("  10 requests in 1.00s, 1KB read\n")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_response_head_gives_status_and_length() -> None:
    head = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n"
    assert status_and_length(head) == (201, 42)
    assert status_and_length(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, 0)


@pytest.mark.parametrize(
    ("target", "verdict"),
    [
        (Target("ratio", 0.5, 0.5), "PASS"),
        (Target("ratio", 0.49, 0.5), "MISS"),
        (Target("p99", 49.9, 50, below=True, unit="ms"), "PASS"),
        (Target("p99", 50.0, 50, below=True, unit="ms"), "MISS"),
        (Target("drain", math.nan, 60, below=True, unit="s"), "MISS"),
        (Target("not run", None, 0.5), "SKIP"),
    ],
)
def test_targets_are_judged(target: Target, verdict: str) -> None:
    assert target.verdict == verdict
    assert target.line().startswith(verdict)


def test_a_target_line_shows_figure_and_threshold() -> None:
    line = Target("uncached point read ≥ 0.5x its floor", 0.612, 0.5).line()
    assert line == "PASS  uncached point read ≥ 0.5x its floor: 0.61x (≥ 0.50x)"
    orders = Target("accepted", 431.4, 500, unit="orders/s").line()
    assert orders == "MISS  accepted: 431 orders/s (≥ 500 orders/s)"


def test_a_target_never_reached_says_why() -> None:
    line = Target("all sent within", math.nan, 60, below=True, unit="s", detail="9 left").line()
    assert line == "MISS  all sent within: none (< 60.0 s); 9 left"


def test_ratio_of_what_was_not_measured_is_none() -> None:
    assert ratio(50.0, 100.0) == 0.5
    assert ratio(None, 100.0) is None
    assert ratio(50.0, None) is None
    assert math.isnan(ratio(50.0, 0.0) or 0.0)


def test_each_row_is_printed_beside_its_floors() -> None:
    rows = [
        Row("api", 500, 10.0, 40.0, floors=("raw, Postgres", "raw, PgBouncer", "absent")),
        Row("raw, Postgres", 1000, 2.0, 8.0),
        Row("raw, PgBouncer", 800, 3.0, 9.0, errors=2),
    ]
    lines = table(rows)
    assert lines[2] == (
        "| api | 500 req/s | 10.00 | 40.00 | 0 | 0.50x raw, Postgres, 0.62x raw, PgBouncer |"
    )
    assert lines[4] == "| raw, PgBouncer | 800 req/s | 3.00 | 9.00 | 2 |  |"


def test_orders_are_new_and_on_two_distinct_products() -> None:
    rng = random.Random(1)
    shop = Shop(users=10, products=3)
    for _ in range(50):
        order = json.loads(new_order_body(rng, shop))
        assert 1 <= order["user_id"] <= 10
        products = [item["product_id"] for item in order["items"]]
        assert len(set(products)) == 2
        assert all(1 <= p <= 3 for p in products)
    request = new_order_request(b'{"user_id":1}', "run-7", "127.0.0.1")
    head, body = request.split(b"\r\n\r\n")
    assert head.startswith(b"POST /orders HTTP/1.1\r\n")
    assert b"\r\nIdempotency-Key: run-7\r\n" in head
    assert b"\r\nContent-Length: 13" in head
    assert body == b'{"user_id":1}'


def test_a_run_can_be_shortened_to_some_groups() -> None:
    assert parse_args([]).only == ["cached", "reads", "writes"]
    assert parse_args(["--only", "reads,writes"]).only == ["reads", "writes"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "everything"])


def test_cpu_report_counts_the_stacks_processes_from_the_sustained_run_to_the_drains_end(
    tmp_path: Path,
) -> None:
    root = "/checkout"
    hz = cpu.TICKS_PER_S

    def snap(t: float, worker: int, backend: int, other: int, wrk: bool) -> str:
        processes = {
            "10": [worker * hz, 1, f"{root}/.venv/bin/celery -A services.worker.app worker", 5],
            "11": [0, 1, f"/usr/lib/postgresql/15/bin/postgres -D {root}/.stack/pgdata", 5],
            # A backend changes its title with every query: its parent makes it ours.
            "12": [backend * hz, 11, f"postgres: stampede stampede idle {t}", 6],
            "13": [other * hz, 1, "/usr/lib/postgresql/15/bin/postgres -D /elsewhere", 5],
        }
        if wrk:
            processes["14"] = [0, 1, "wrk -t2 -c64 -d60s --latency http://127.0.0.1:8000", 7]
        return json.dumps({"t": t, "p": processes})

    samples = tmp_path / "cpu.jsonl"
    samples.write_text(
        "\n".join(
            [
                snap(100, 1, 1, 0, wrk=False),
                snap(101, 2, 2, 5, wrk=True),
                snap(161, 32, 8, 50, wrk=True),
                snap(171, 42, 10, 90, wrk=False),
                snap(200, 90, 90, 90, wrk=False),
            ]
        )
    )

    lines = cpu.report(samples, orders=1000, drain_s=10, root=Path(root))

    rows = {line.split(" | ")[0].strip("| "): line for line in lines[3:]}
    assert rows["worker (celery)"] == "| worker (celery) | 41.0 | 0.58 | 41.00 |"
    assert rows["postgres"] == "| postgres | 9.0 | 0.13 | 9.00 |"
    assert rows["all"] == "| all | 50.0 | 0.70 | 50.00 |"


@pytest.mark.parametrize(
    ("command", "role"),
    [
        (
            "/c/.venv/bin/python /c/.venv/bin/celery -A services.worker.app --quiet worker",
            "worker (celery)",
        ),
        ("/c/.venv/bin/python -m services.worker.relay", "relay"),
        ("/c/.venv/bin/python -m devstack.mailsink /c/.stack/mail --smtp-port 25025", "mail sink"),
        (
            "/c/.venv/bin/python /c/.venv/bin/gunicorn -c python:services.api.gunicorn_conf",
            "api (gunicorn)",
        ),
        ("/c/.cache/pgbouncer-1.24.1/bin/pgbouncer /c/.stack/pgbouncer/pgbouncer.ini", "pgbouncer"),
        ("/usr/bin/redis-server 127.0.0.1:26380", "redis 26380"),
        ("postgres: stampede stampede 127.0.0.1(5000) idle", "postgres"),
    ],
)
def test_cpu_roles(command: str, role: str) -> None:
    assert cpu.role(command) == role
