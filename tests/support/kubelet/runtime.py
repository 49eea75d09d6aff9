"""The container runtime: podman in the private store, every object labelled with its run.

Everything a run creates (network, pods, containers) carries ``RUN_LABEL=<run id>``, so
``remove_all`` deletes exactly that, and a later run can sweep what a killed one left.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devstack.release.podman import Podman, PodmanError

RUN_LABEL = "io.stampede.kubelet.run"


class Runtime:
    """podman commands for one run; ``run_id`` names and labels what it creates."""

    def __init__(self, podman: Podman, run_id: str) -> None:
        self.podman = podman
        self.run_id = run_id
        self.label = f"{RUN_LABEL}={run_id}"

    def argv(self, *args: str) -> list[str]:
        return [*self.podman.argv(), *args]

    def env(self) -> dict[str, str]:
        return self.podman.env()

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.podman.run(*args, timeout=timeout, check=check)

    def popen(self, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """A long-running podman command (``wait``), its output to ``log``."""
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv(*args), stdout=out, stderr=subprocess.STDOUT, env=self.env()
            )

    def image_user(self, image: str) -> str:
        """The image's USER ("" when it has none: root)."""
        result = self.run("image", "inspect", image, "--format", "{{.Config.User}}", check=False)
        if result.returncode != 0:
            raise PodmanError(f"image {image} is not in the store (imagePullPolicy: Never)")
        return result.stdout.strip()

    def remove_all(self) -> list[str]:
        """Remove this run's pods, containers and network; what failed, if anything."""
        return remove_labelled(self, self.label)


def remove_labelled(runtime: Runtime, label: str) -> list[str]:
    problems: list[str] = []
    pods = runtime.run("pod", "ps", "-q", "--filter", f"label={label}", check=False)
    for pod in pods.stdout.split():
        result = runtime.run("pod", "rm", "-f", "-t", "0", pod, check=False, timeout=120)
        if result.returncode != 0:
            problems.append(f"pod {pod}: {result.stderr.strip()}")
    containers = runtime.run("ps", "-aq", "--filter", f"label={label}", check=False)
    for container in containers.stdout.split():
        result = runtime.run("rm", "-f", "-t", "0", container, check=False)
        if result.returncode != 0:
            problems.append(f"container {container}: {result.stderr.strip()}")
    networks = runtime.run(
        "network", "ls", "-q", "--filter", f"label={label}", "--format", "{{.Name}}", check=False
    )
    for network in networks.stdout.split():
        result = runtime.run("network", "rm", "-f", network, check=False)
        if result.returncode != 0:
            problems.append(f"network {network}: {result.stderr.strip()}")
    return problems


def sweep_abandoned_runs(runtime: Runtime) -> None:
    """Remove what runs of processes that no longer exist left behind (killed test runs)."""
    listed = runtime.run(
        "pod", "ps", "--format", f'{{{{index .Labels "{RUN_LABEL}"}}}}', check=False
    )
    networks = runtime.run(
        "network", "ls", "--format", f'{{{{index .Labels "{RUN_LABEL}"}}}}', check=False
    )
    for run_id in set(listed.stdout.split()) | set(networks.stdout.split()):
        pid = run_id.split("-")[0]
        if run_id != runtime.run_id and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove_labelled(runtime, f"{RUN_LABEL}={run_id}")


def new_run_id() -> str:
    """``<pid>-<random>``: the pid tells a later sweep whether the run's owner is gone."""
    return f"{os.getpid()}-{os.urandom(3).hex()}"
