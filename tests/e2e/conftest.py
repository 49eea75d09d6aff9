"""Cluster checks for the kind e2e (``make e2e``, see k8s/kind.sh).

``k8s/kind.sh e2e`` creates the cluster, installs the add-ons and the chart, port-forwards
and then runs ``tests/contract`` (against the port-forwarded api) and these tests. Anywhere
else (no Docker/kind, or plain ``make test``) they skip and say why.
"""

from __future__ import annotations

import os

import pytest

from tests.support.cluster import Cluster


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    context = os.environ.get("STAMPEDE_E2E_CONTEXT")
    if not context:
        pytest.skip(
            "kind e2e: needs a kind cluster set up by `make e2e` (Docker, kind, skaffold); "
            "the API contract tests run against the local stack in `make test`"
        )
    return Cluster(
        context=context,
        namespace=os.environ.get("STAMPEDE_E2E_NAMESPACE", "stampede"),
        prometheus_url=os.environ["STAMPEDE_E2E_PROMETHEUS_URL"],
        grafana_url=os.environ["STAMPEDE_E2E_GRAFANA_URL"],
    )
