"""Stampede's Grafana dashboards, as code: the single source of ``grafana/dashboards/*.json``.

One module per dashboard states its panels and queries through Grafana's typed
grafana-foundation-sdk builders (``shared`` holds what they all have in common).
``make dashboards`` writes the JSON, which stays in the repository because the chart
packages it and the observability tests run its queries; a test fails when the JSON is
not exactly what this code generates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from devstack.release.dashboards import api, cache, database, overview, worker
from devstack.release.generated import write_exactly

# File stem → the function building that dashboard; the stem is also its uid's suffix.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "api": api.build,
    "cache": cache.build,
    "database": database.build,
    "overview": overview.build,
    "worker": worker.build,
}


def render(board: Dashboard) -> str:
    """Pretty JSON with sorted keys: byte-identical on every run, readable in diffs."""
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generated_dashboards() -> dict[str, str]:
    """File name → the JSON the code generates, in file-name order."""
    return {f"{stem}.json": render(build()) for stem, build in sorted(DASHBOARDS.items())}


def write_dashboards(target: Path) -> list[str]:
    """Make ``target`` hold exactly the generated dashboards; return their file names.

    JSON files the code does not generate are removed: a hand-written dashboard would
    otherwise ship without ever passing through the code.
    """
    expected = generated_dashboards()
    write_exactly(target, expected)
    return list(expected)
