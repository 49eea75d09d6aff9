"""The issue's targets, each judged PASS or MISS on one run's figures."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """``measured`` must be at least (or, with ``below``, under) ``threshold``.

    ``measured`` is None when the run did not measure it (``--only``): neither a PASS
    nor a MISS, and said so.
    """

    label: str
    measured: float | None
    threshold: float
    below: bool = False
    unit: str = "x"
    detail: str = ""  # said after the figure, e.g. why there is none

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "SKIP"
        if math.isnan(self.measured):
            return "MISS"
        met = self.measured < self.threshold if self.below else self.measured >= self.threshold
        return "PASS" if met else "MISS"

    def line(self) -> str:
        relation = "<" if self.below else "≥"
        wanted = f"{relation} {_figure(self.threshold, self.unit)}"
        if self.measured is None:
            return f"SKIP  {self.label} ({wanted}): not measured in this run"
        detail = f"; {self.detail}" if self.detail else ""
        figure = _figure(self.measured, self.unit)
        return f"{self.verdict}  {self.label}: {figure} ({wanted}){detail}"


def _figure(value: float, unit: str) -> str:
    if math.isnan(value):
        return "none"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


def ratio(value: float | None, floor: float | None) -> float | None:
    """``value / floor``, or None when either was not measured."""
    if value is None or floor is None:
        return None
    return value / floor if floor else math.nan
