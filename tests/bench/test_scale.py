"""The scale comparison's verdicts: the median of the paired ratios (K times over the
demo size, measured one after the other), PASS from 0.9x; the floors are shown, not
judged."""

from __future__ import annotations

import pytest

from bench.report import Row
from bench.scale import READS, Pairs, Size, comparison, parse_args
from bench.scenarios import DEEP_PAGE, ORDERS_READ, POINT_READ


def pairs(name: str, *rates: tuple[float, float]) -> Pairs:
    return [(Row(name, demo, 1.0, 2.0), Row(name, big, 1.0, 2.0)) for demo, big in rates]


def test_each_held_read_by_the_median_of_its_paired_ratios() -> None:
    # The machine slows down for the second pair, for both sides alike: paired, it cancels.
    found = {
        POINT_READ: pairs(POINT_READ, (1000, 950), (500, 470), (1000, 880)),
        ORDERS_READ: pairs(ORDERS_READ, (500, 440), (250, 220), (500, 450)),
        DEEP_PAGE: pairs(DEEP_PAGE, (800, 800), (400, 400), (800, 900)),
        "raw x": pairs("raw x", (9000, 4000), (4500, 2000), (9000, 4000)),
    }
    lines, targets = comparison(Size(1), Size(100), found)
    verdicts = {t.label: (t.verdict, round(t.measured or 0, 3)) for t in targets}
    assert verdicts == {
        f"{POINT_READ} at 100x ≥ 0.9x the demo size": ("PASS", 0.94),
        f"{ORDERS_READ} at 100x ≥ 0.9x the demo size": ("MISS", 0.88),
        f"{DEEP_PAGE} at 100x ≥ 0.9x the demo size": ("PASS", 1.0),
    }
    assert f"| {POINT_READ} | 1000 | 880 | 0.94x | 0.88x-0.95x |" in lines
    assert "| raw x | 9000 | 4000 | 0.44x | 0.44x-0.44x |" in lines


def test_every_read_draws_from_its_own_size() -> None:
    demo, big = Size(1), Size(100)
    by_name = {read.name: read for read in READS}
    assert by_name[POINT_READ].args(demo) == (10_000, 42, "/users/%d")
    assert by_name[ORDERS_READ].args(big) == (1_000_000, 42, "/users/%d/orders")
    assert by_name[DEEP_PAGE].args(big) == (100_000, 42)
    assert by_name["raw orders read, PgBouncer"].args(demo) == (10_000, 42, "/users/%d/orders")
    assert by_name["raw point read, Postgres"].server == "Postgres"
    assert big.database == "stampede_scale100"


def test_the_options() -> None:
    args = parse_args([])
    assert (args.scale, args.pairs) == (100, 5)
    with pytest.raises(SystemExit):
        parse_args(["--scale", "1"])
