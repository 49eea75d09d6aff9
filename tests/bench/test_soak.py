"""The soak's verdict, table and plot on made-up samples: what passes, what a leak of
memory, descriptors or connections, a replaced worker or one error fails."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from bench import soak
from bench.soak import (
    RSS_GROWTH,
    WARMUP_REQUESTS,
    Check,
    Sample,
    fd_kinds,
    parse_args,
    plot,
    table,
    verdict,
)

CONNECTIONS = {"Postgres": 21, "PgBouncer clients": 20, "PgBouncer servers": 20, "Redis cache": 8}


def steady(slices: int = 10, per_slice: int = 10_000) -> list[Sample]:
    """A run whose figures settle during the warm-up and then hold."""
    samples = []
    for n in range(1, slices + 1):
        warming = n <= 1
        samples.append(
            Sample(
                seconds=10.0 * n,
                requests=per_slice * n,
                rps=1000.0,
                p99_ms=20.0,
                errors=0,
                # The first slice still fills caches and pools; then small noise.
                rss_kib={101: (90_000 if warming else 100_000 + 37 * (n % 3)), 102: 99_000},
                fds={101: 30 if warming else 40 + n % 2, 102: 41},
                connections={
                    name: (value // 2 if warming else value) for name, value in CONNECTIONS.items()
                },
            )
        )
    return samples


def failed(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if not check.passed]


def test_a_steady_run_passes_even_though_the_warm_up_grew() -> None:
    checks = verdict(steady(), warmup_requests=20_000)
    assert failed(checks) == []
    names = [check.name for check in checks]
    assert "api worker 101 RSS after the warm-up" in names
    assert "PgBouncer servers connections do not grow" in names


def test_rss_growing_by_five_percent_after_the_warm_up_fails() -> None:
    samples = steady()
    base = samples[1].rss_kib[101]
    leaked = int(base * (1 + RSS_GROWTH)) + 1
    samples[-1] = replace(samples[-1], rss_kib={**samples[-1].rss_kib, 101: leaked})
    assert failed(verdict(samples, warmup_requests=20_000)) == [
        "api worker 101 RSS after the warm-up"
    ]
    just_under = int(base * (1 + RSS_GROWTH)) - 100
    samples[-1] = replace(samples[-1], rss_kib={**samples[-1].rss_kib, 101: just_under})
    assert failed(verdict(samples, warmup_requests=20_000)) == []


def test_descriptors_that_climb_fail_while_noise_below_the_early_peak_does_not() -> None:
    samples = [replace(s, fds={101: 40 + n, 102: 41}) for n, s in enumerate(steady(), start=1)]
    assert failed(verdict(samples, warmup_requests=20_000)) == [
        "api worker 101 open fds do not grow"
    ]


def test_a_connection_leak_fails() -> None:
    samples = steady()
    samples[-2] = replace(samples[-2], connections={**CONNECTIONS, "Postgres": 22})
    assert failed(verdict(samples, warmup_requests=20_000)) == ["Postgres connections do not grow"]


def test_a_replaced_worker_and_any_error_fail() -> None:
    samples = steady()
    samples[5] = replace(samples[5], errors=1)
    samples[-1] = replace(samples[-1], rss_kib={101: 100_000, 103: 60_000}, fds={101: 40, 103: 30})
    assert set(failed(verdict(samples, warmup_requests=20_000))) == {
        "the same api workers throughout",
        "no request failed",
    }


def test_errors_during_the_warm_up_count_too() -> None:
    samples = steady()
    samples[0] = replace(samples[0], errors=3)
    assert failed(verdict(samples, warmup_requests=20_000)) == ["no request failed"]


def test_too_few_slices_after_the_warm_up_is_no_pass() -> None:
    checks = verdict(steady(slices=3), warmup_requests=25_000)
    assert failed(checks) == ["enough slices after the warm-up"]


def test_the_table_has_a_row_per_slice_and_the_plot_is_a_png(tmp_path: Path) -> None:
    samples = steady(slices=4)
    lines = table(samples)
    assert len(lines) == 2 + 4
    assert lines[0].startswith("| s | requests | req/s | p99 ms | errors | RSS MiB 101 |")
    assert "| 40 | 40000 | 1000 | 20.0 | 0 | 97.7 | 96.7 | 40 | 41 | 21 | 20 | 20 | 8 |" in lines
    png = tmp_path / "soak.png"
    plot(samples, 10_000, png)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_options() -> None:
    full = parse_args([])
    assert (full.requests, full.slice, full.warmup) == (1_000_000, 10, WARMUP_REQUESTS)
    short = parse_args(["--requests", "50000", "--warmup", "10000"])
    assert (short.requests, short.slice, short.warmup) == (50_000, 3, 10_000)
    # A warm-up as long as the run leaves nothing to judge.
    with pytest.raises(SystemExit):
        parse_args(["--requests", "50000"])
    with pytest.raises(SystemExit):
        parse_args(["--warmup", "-1"])


def test_the_fds_cell_says_which_kind_of_descriptor_it_counts() -> None:
    sample = replace(
        steady(slices=1)[0],
        fds={101: 79, 102: 41},
        fd_kinds={101: {"Redis cache": 64, "PgBouncer": 2, "other socket": 1, "not a socket": 12}},
    )
    row = table([sample])[-1]
    assert "| 79 (64r 2b 1s 12f) | 41 |" in row


def test_descriptors_are_told_apart_by_the_port_they_connect_to() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with listener, socket.create_connection(("127.0.0.1", port)):
        kinds = fd_kinds(os.getpid())
        soak.PEERS[port] = "Redis cache"
        try:
            marked = fd_kinds(os.getpid())
        finally:
            del soak.PEERS[port]
    assert marked.get("Redis cache", 0) == kinds.get("Redis cache", 0) + 1
    assert marked["other socket"] == kinds["other socket"] - 1
    assert kinds["not a socket"] >= 3  # stdin, stdout, stderr at least
