"""Cluster checks for the kind e2e (``make e2e``, see k8s/kind.sh).

``k8s/kind.sh e2e`` creates the cluster, installs the add-ons and the chart, port-forwards
and then runs ``tests/contract`` (against the port-forwarded api) and these tests. Anywhere
else (no Docker/kind, or plain ``make test``) they skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from devstack.release import kubetools

T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    context: str
    namespace: str
    prometheus_url: str
    grafana_url: str

    def kubectl(self, *args: str, namespace: str | None = None) -> str:
        argv = [str(kubetools.find("kubectl")), "--context", self.context]
        argv += ["-n", namespace or self.namespace, *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


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


def eventually(check: Callable[[], T], timeout: float = 180, interval: float = 5) -> T:
    """``check()``'s result once it stops raising AssertionError, else its last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)
