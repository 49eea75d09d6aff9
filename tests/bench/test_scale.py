"""The scale comparison's verdicts: the median of the rounds' paired ratios (K times over
the demo size, round by round), PASS from 0.9x; the floors are shown, not judged."""

from __future__ import annotations

import pytest

from bench.report import Row
from bench.scale import Size, comparison, parse_args
from bench.scenarios import DEEP_PAGE, ORDERS_READ, POINT_READ

NAMES = {"point": POINT_READ, "orders": ORDERS_READ, "deep": DEEP_PAGE, "floor": "raw x"}


def size(scale: int, *rounds: dict[str, float]) -> Size:
    measured = Size(scale)
    for rates in rounds:
        measured.rounds.append([Row(NAMES[key], rps, 1.0, 2.0) for key, rps in rates.items()])
    return measured


def test_each_held_read_by_the_median_of_its_paired_ratios() -> None:
    # The machine slows down in round 2 for both sizes alike: paired, it cancels out.
    demo = size(
        1,
        {"point": 1000, "orders": 500, "deep": 800, "floor": 9000},
        {"point": 500, "orders": 250, "deep": 400, "floor": 4500},
        {"point": 1000, "orders": 500, "deep": 800, "floor": 9000},
    )
    big = size(
        100,
        {"point": 950, "orders": 440, "deep": 800, "floor": 4000},
        {"point": 470, "orders": 220, "deep": 400, "floor": 2000},
        {"point": 880, "orders": 450, "deep": 900, "floor": 4000},
    )
    lines, targets = comparison(demo, big)
    verdicts = {t.label: (t.verdict, round(t.measured or 0, 3)) for t in targets}
    assert verdicts == {
        f"{POINT_READ} at 100x ≥ 0.9x the demo size": ("PASS", 0.94),
        f"{ORDERS_READ} at 100x ≥ 0.9x the demo size": ("MISS", 0.88),
        f"{DEEP_PAGE} at 100x ≥ 0.9x the demo size": ("PASS", 1.0),
    }
    assert f"| {POINT_READ} | 1000 | 880 | 0.94x | 0.88x-0.95x |" in lines
    assert "| raw x | 9000 | 4000 | 0.44x | 0.44x-0.44x |" in lines


def test_the_options() -> None:
    args = parse_args([])
    assert (args.scale, args.rounds) == (100, 3)
    with pytest.raises(SystemExit):
        parse_args(["--scale", "1"])
