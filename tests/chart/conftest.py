"""The chart, rendered once per scenario per session and shared by every test.

helm comes from PATH or from the pinned PyPI wheel (``devstack.release.kubetools``), so a
fresh machine needs nothing else.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from devstack.release import kubetools
from tests.support.chart import (
    MONITORING_APIS,
    SCENARIOS,
    Helm,
    Rendered,
    merged_values,
    scenario_file,
)


@pytest.fixture(scope="session")
def helm() -> Helm:
    try:
        return Helm(kubetools.find("helm"))
    except kubetools.ToolError as error:
        pytest.fail(f"helm is not available: {error}")


@pytest.fixture(scope="session")
def rendered(helm: Helm) -> dict[str, Rendered]:
    """Every ci/*-values.yaml scenario, rendered once (in parallel: helm is a process), for
    a cluster with kube-prometheus-stack (what the monitoring objects are validated on)."""

    def render(scenario: str) -> Rendered:
        docs = helm.template([scenario_file(scenario)], api_versions=MONITORING_APIS)
        return Rendered(scenario, merged_values(scenario), docs)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {r.scenario: r for r in pool.map(render, SCENARIOS)}


@pytest.fixture(params=SCENARIOS)
def scenario(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    return rendered[request.param]
