"""One scenario of the chart installed on pods, and everything removed afterwards."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.support.chart import NAMESPACE, Helm, scenario_file
from tests.support.kubelet.order import InstallPlan
from tests.support.kubelet.probes import Timing
from tests.support.kubelet.release import InstallError, Namespace
from tests.support.kubelet.runtime import Runtime
from tests.support.kubelet.scenarios import Smtp, setup_for
from tests.support.smtp import RecordingHandler

# Probe periods, delays and back-offs run at half the spec's: thresholds and timeouts
# are the spec's own.
TIMING = Timing(scale=0.5)
SMTP_NAME = "smtp.test.internal"
READY_TIMEOUT = 240.0


class SmtpController(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Installation:
    """A scenario after ``helm install``: its namespace, and the install's outcome."""

    scenario: str
    namespace: Namespace
    plan: InstallPlan
    error: InstallError | None
    seconds: float
    smtp_handler: RecordingHandler | None = None

    def require(self) -> Namespace:
        """The namespace, if the install succeeded and every pod became Ready."""
        if self.error is not None:
            raise self.error
        return self.namespace


@contextmanager
def install_scenario(
    runtime: Runtime,
    helm: Helm,
    scenario: str,
    values: dict[str, Any],
    workdir: Path,
    smtp_port: int,
    start_smtp: Callable[[str, int], SmtpController],
) -> Iterator[Installation]:
    """Install ``scenario`` (its ci values file plus ``scenarios.setup_for``), wait for
    Ready pods, yield; then delete every pod, container, network and address."""
    setup = setup_for(scenario, values, Smtp(SMTP_NAME, smtp_port))
    namespace = Namespace(runtime, workdir, TIMING, NAMESPACE, setup.existing, {})
    smtp: SmtpController | None = None
    try:
        smtp_ip = namespace.network.service_ip()
        smtp = start_smtp(smtp_ip, smtp_port)
        smtp.start()
        namespace.external_hosts[SMTP_NAME] = smtp_ip
        docs = helm.template([scenario_file(scenario)], set_values=setup.set_values)
        plan = InstallPlan.of(docs)
        started = time.monotonic()
        error: InstallError | None = None
        try:
            if setup.external_database is not None:
                host = values["externalDatabase"]["host"]
                database = namespace.start_external("external-db", setup.external_database, host)
                namespace.wait_pods_ready([database], READY_TIMEOUT)
            namespace.install(plan)
            namespace.wait_ready(READY_TIMEOUT)
        except InstallError as failure:
            error = failure
        yield Installation(scenario, namespace, plan, error, time.monotonic() - started)
    finally:
        if smtp is not None:
            smtp.stop()
        problems = namespace.close()
        if problems:
            raise AssertionError(f"cleaning up {scenario}'s pods failed: {problems}")
