"""``python -m services.operator``: the command the chart and the local stack run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.operator.in_cluster import MissingNamespaceError, run_in_cluster
from services.operator.settings import OperatorSettings


def test_the_entry_point_names_both_modes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.operator", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "--budget-file" in result.stdout


async def test_in_a_cluster_it_refuses_to_start_without_its_namespace() -> None:
    with pytest.raises(MissingNamespaceError, match="STAMPEDE_OPERATOR_NAMESPACE"):
        await run_in_cluster(OperatorSettings(namespace=None))


def test_the_settings_come_from_the_environment_the_chart_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STAMPEDE_OPERATOR_NAMESPACE", "shop")
    monkeypatch.setenv("STAMPEDE_OPERATOR_METRICS_PORT", "9999")
    monkeypatch.setenv("STAMPEDE_OPERATOR_BUDGET_NAME", "stampede")
    settings = OperatorSettings()
    assert (settings.namespace, settings.metrics_port, settings.health_port) == ("shop", 9999, 8080)
    assert settings.budget_name == "stampede"
