"""A kind cluster for the e2e checks, and waiting for it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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
