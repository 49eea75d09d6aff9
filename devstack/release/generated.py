"""Writing generated files: a directory made to hold exactly what a generator produced."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_exactly(target: Path, expected: Mapping[str, str], pattern: str = "*.json") -> None:
    """Make ``target`` hold exactly ``expected`` (file name → content) among the files
    matching ``pattern``: others are removed, changed ones rewritten, equal ones left
    untouched (their modification times stay)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in target.glob(pattern):
        if path.name not in expected:
            path.unlink()
    for name, content in expected.items():
        path = target / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
