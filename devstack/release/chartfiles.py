"""Files the chart packages from elsewhere in the repository, generated, never hand-edited.

Dashboards are code (``devstack.release.dashboards``), written out as pretty JSON to
``grafana/dashboards/*.json``; the chart carries that JSON minified in
``charts/stampede/files/dashboards/`` and renders one ConfigMap each for Grafana's sidecar.
``make dashboards`` (``python -m devstack.release.chartfiles``) regenerates both; tests
check both are current.
"""

from __future__ import annotations

import json
from pathlib import Path

from devstack.release import dashboards
from devstack.release.generated import write_exactly

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_SOURCE = REPO_ROOT / "grafana" / "dashboards"
DASHBOARDS_IN_CHART = REPO_ROOT / "charts" / "stampede" / "files" / "dashboards"


def minify(text: str) -> str:
    """Compact JSON with the source's key order: small ConfigMaps, stable diffs."""
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) + "\n"


def expected_dashboards(source: Path = DASHBOARDS_SOURCE) -> dict[str, str]:
    """File name → the content the chart must carry."""
    return {path.name: minify(path.read_text()) for path in sorted(source.glob("*.json"))}


def packaged_dashboards(target: Path = DASHBOARDS_IN_CHART) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(target.glob("*.json"))}


def sync_dashboards(
    source: Path = DASHBOARDS_SOURCE, target: Path = DASHBOARDS_IN_CHART
) -> list[str]:
    """Make ``target`` hold exactly the minified dashboards of ``source``; return the names."""
    expected = expected_dashboards(source)
    write_exactly(target, expected)
    return sorted(expected)


def regenerate_dashboards(
    source: Path = DASHBOARDS_SOURCE, target: Path = DASHBOARDS_IN_CHART
) -> list[str]:
    """Write the dashboards' JSON from the code into ``source``, then sync ``target``."""
    dashboards.write_dashboards(source)
    return sync_dashboards(source, target)


def main() -> None:
    names = regenerate_dashboards()
    written = DASHBOARDS_SOURCE.relative_to(REPO_ROOT)
    packaged = DASHBOARDS_IN_CHART.relative_to(REPO_ROOT)
    print(f"{len(names)} dashboard(s) in {written} and {packaged}: {', '.join(names)}")


if __name__ == "__main__":
    main()
