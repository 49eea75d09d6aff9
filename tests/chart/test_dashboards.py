"""grafana/dashboards is exactly what the dashboards' code generates, and the chart carries
it minified (``make dashboards`` regenerates both)."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.release import chartfiles, dashboards
from tests.support.chart import Rendered


def test_dashboard_json_is_what_the_code_generates() -> None:
    written = {path.name: path.read_text() for path in chartfiles.DASHBOARDS_SOURCE.glob("*.json")}
    assert written == dashboards.generated_dashboards(), (
        "grafana/dashboards differs from devstack/release/dashboards (edit the code, never "
        "the JSON): run `make dashboards`"
    )


def test_chart_dashboards_equal_the_source() -> None:
    assert chartfiles.packaged_dashboards() == chartfiles.expected_dashboards(), (
        "charts/stampede/files/dashboards is stale: run `make dashboards`"
    )


def test_each_dashboard_becomes_a_labelled_configmap(rendered: dict[str, Rendered]) -> None:
    expected = chartfiles.expected_dashboards()
    for scenario in rendered.values():
        maps = [
            doc
            for doc in scenario.kinds("ConfigMap")
            if doc["metadata"]["labels"].get("grafana_dashboard") == "1"
        ]
        if not scenario.values["metrics"]["dashboards"]["enabled"]:
            assert not maps
            continue
        carried = {name: text for doc in maps for name, text in doc["data"].items()}
        assert carried == expected


def test_sync_writes_minified_copies_and_drops_stale_ones(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "chart"
    source.mkdir()
    target.mkdir()
    (source / "api.json").write_text(
        json.dumps({"uid": "api", "title": "API", "panels": []}, indent=2)
    )
    (target / "gone.json").write_text("{}")
    assert chartfiles.sync_dashboards(source, target) == ["api.json"]
    assert (target / "api.json").read_text() == '{"uid":"api","title":"API","panels":[]}\n'
    assert not (target / "gone.json").exists()


def test_regenerate_writes_the_code_then_the_chart_copies(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "chart"
    source.mkdir()
    (source / "hand-written.json").write_text("{}")
    generated = dashboards.generated_dashboards()
    assert chartfiles.regenerate_dashboards(source, target) == sorted(generated)
    assert {path.name: path.read_text() for path in source.iterdir()} == generated
    assert chartfiles.packaged_dashboards(target) == chartfiles.expected_dashboards(source)
