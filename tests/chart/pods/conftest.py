"""Fixtures of the pod tests: podman, the images, and each scenario installed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from devstack.release import podman as podman_module
from devstack.release.podman import Podman
from devstack.servers import free_port
from tests.support.chart import REPO_ROOT, Helm, merged_values, scenario_file
from tests.support.kubelet.installation import Installation, install_scenario
from tests.support.kubelet.network import sweep_abandoned_addresses
from tests.support.kubelet.runtime import Runtime, new_run_id, sweep_abandoned_runs
from tests.support.kubelet.standins import provide_images
from tests.support.smtp import RecordingHandler

INSTALL_PODMAN = REPO_ROOT / "devstack" / "release" / "install-podman.sh"
SCENARIOS = ("default", "external-db")


@pytest.fixture(scope="session")
def pod_podman() -> Podman:
    """podman with its pod and network parts, installed from Debian when missing."""
    if os.geteuid() != 0:
        pytest.skip("pods on a bridge network need root (rootless podman has no bridge here)")
    installed = subprocess.run(
        [str(INSTALL_PODMAN)], capture_output=True, text=True, check=False, timeout=900
    )
    if installed.returncode != 0:
        pytest.skip(f"podman cannot be installed here: {installed.stderr.strip()[-500:]}")
    reason = podman_module.unusable_reason()
    if reason is not None:
        pytest.skip(f"podman is not usable here: {reason}")
    podman = Podman()
    sweeper = Runtime(podman, new_run_id())
    sweep_abandoned_runs(sweeper)
    sweep_abandoned_addresses()
    return podman


@pytest.fixture(scope="session")
def pod_images(pod_podman: Podman, helm: Helm) -> Podman:
    """Every image the scenarios' pods name, built (layers cached) and tagged."""
    docs = [doc for s in SCENARIOS for doc in helm.template([scenario_file(s)])]
    provide_images(pod_podman, docs)
    return pod_podman


@pytest.fixture(scope="module", params=SCENARIOS)
def installation(
    request: pytest.FixtureRequest,
    pod_images: Podman,
    helm: Helm,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installation]:
    """The scenario installed with ``helm install`` semantics, its pods given time to be
    Ready; an install that fails is kept in ``.error`` for the tests to report."""
    scenario: str = request.param
    handler = RecordingHandler()
    workdir = tmp_path_factory.mktemp(f"pods-{scenario}")
    with install_scenario(
        Runtime(pod_images, new_run_id()),
        helm,
        scenario,
        merged_values(scenario),
        workdir,
        smtp_port=free_port(),
        start_smtp=lambda host, port: Controller(handler, hostname=host, port=port),
    ) as installed:
        installed.smtp_handler = handler
        yield installed


@pytest.fixture(scope="session")
def pod_report() -> Path:
    """Where the pod tests write what they measured (printed by nobody, kept for reading)."""
    path = podman_module.CACHE / "pod-report.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
