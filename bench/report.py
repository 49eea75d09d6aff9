"""The bench's table: every row with its figures and its ratio to each of its floors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured scenario. ``floors`` names the rows it is compared with."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    floors: tuple[str, ...] = ()
    unit: str = "req/s"


def table(rows: Sequence[Row]) -> list[str]:
    """Markdown lines: a row per scenario, its ratios to its floors in the last column."""
    by_name = {row.name: row for row in rows}
    lines = [
        "| scenario | rate | p50 ms | p99 ms | errors | against its floors |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratios = ", ".join(
            f"{row.rps / by_name[floor].rps:.2f}x {floor}"
            for floor in row.floors
            if floor in by_name and by_name[floor].rps
        )
        lines.append(
            f"| {row.name} | {row.rps:.0f} {row.unit} | {row.p50_ms:.2f} | {row.p99_ms:.2f} "
            f"| {row.errors} | {ratios} |"
        )
    return lines
