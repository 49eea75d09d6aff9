"""A pod's lifecycle, as the kubelet runs it, on one podman pod.

The sandbox is a podman pod with its own network namespace and static IP on the run's
bridge network, its /etc/hosts holding the Service names resolvable when it starts.
Then, in order: volumes (a missing ConfigMap or Secret stops the pod there, like a
FailedMount); init containers one at a time, each to success (``restartPolicy: Never``:
a failure fails the pod); native sidecars (init containers with ``restartPolicy:
Always``) started in their place, the next container waiting for the sidecar's startup
probe; then the containers. Every running container has its probe workers; a failed
startup or liveness probe kills it (preStop, then SIGTERM and the grace period), and an
exited container is restarted as the restart policy says, with the kubelet's
back-off (immediately, then 10 s doubling, scaled by the timing). A container that exits
is unready at once; the pod is Ready when every sidecar and container is.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.kubelet.environment import ContainerConfigError, command_line, container_env
from tests.support.kubelet.network import ClusterNetwork
from tests.support.kubelet.objects import Doc, ObjectStore, PodObject
from tests.support.kubelet.probes import Probe, ProbeResult, ProbeWorker, Timing, run_probe
from tests.support.kubelet.runtime import Runtime
from tests.support.kubelet.security import security_options, verify_run_as_non_root
from tests.support.kubelet.volumes import PodVolumes

# `podman exec` itself takes a moment to start on a busy machine; an exec probe's
# timeoutSeconds is given on top of it (the kubelet's CRI exec has no such start-up).
EXEC_START_ALLOWANCE = 3.0
BACKOFF_FIRST, BACKOFF_MAX = 10.0, 300.0


@dataclass
class Node:
    """What every pod on this "node" shares."""

    runtime: Runtime
    store: ObjectStore
    network: ClusterNetwork
    timing: Timing
    workdir: Path
    hosts: Callable[[], dict[str, str]]  # /etc/hosts names -> IPs, when a pod is created
    service_links: Callable[[], dict[str, str]]
    image_users: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # With an API server: KUBERNETES_SERVICE_HOST/PORT (and the rest of the ``kubernetes``
    # Service's variables) that the kubelet gives every container, and its tokens.
    api_env: Callable[[], dict[str, str]] = dict
    tokens: Callable[[], str] | None = None

    def image_user(self, image: str) -> str:
        with self.lock:
            if image not in self.image_users:
                self.image_users[image] = self.runtime.image_user(image)
            return self.image_users[image]


class Container:
    """One container of the pod and the state the kubelet reports for it."""

    def __init__(self, pod: Pod, spec: Doc, sidecar: bool, init: bool) -> None:
        self.pod, self.spec, self.sidecar, self.init = pod, spec, sidecar, init
        self.name: str = spec["name"]
        self.podman_name = f"{pod.sandbox}-{self.name}"
        self.restarts = 0
        self.running = False
        self.started = False  # the startup probe succeeded (or there is none)
        self.readiness: bool | None = None  # the readiness probe's outcome
        self.exit_code: int | None = None
        self.exited = threading.Event()
        self.last_exit_at = 0.0
        self._stop_probes = threading.Event()

    @property
    def ready(self) -> bool:
        if not (self.running and self.started):
            return False
        return self.readiness is not False and (
            self.readiness is True or "readinessProbe" not in self.spec
        )

    def restart_policy(self) -> str:
        if self.sidecar:
            return "Always"
        if self.init:
            # An init container of a restartPolicy Always pod is retried as OnFailure.
            policy: str = self.pod.spec.get("restartPolicy", "Always")
            return "OnFailure" if policy == "Always" else policy
        return str(self.pod.spec.get("restartPolicy", "Always"))

    def start(self) -> None:
        """Create and start a new incarnation (raises ContainerConfigError)."""
        node = self.pod.node
        image = self.spec["image"]
        pod_context = self.pod.spec.get("securityContext") or {}
        context = self.spec.get("securityContext") or {}
        image_user = node.image_user(image)
        verify_run_as_non_root(pod_context, context, image, image_user)
        env = {
            **node.api_env(),
            **container_env(self.spec, self.pod.obj, node.store, node.service_links()),
        }
        command, args = command_line(self.spec, env)
        node.runtime.run("rm", "-f", "-t", "0", self.podman_name, check=False)
        argv = ["run", "-d", "--pod", self.pod.sandbox, "--name", self.podman_name]
        argv += ["--label", node.runtime.label, "--pull=never", "--restart=no"]
        log = self.pod.logdir / f"{self.name}-{self.restarts}.log"
        argv += ["--log-driver", "k8s-file", "--log-opt", f"path={log}"]
        argv += ["--stop-timeout", str(self.pod.grace_period)]
        argv += security_options(pod_context, context, image_user)
        argv += self.pod.volumes.mount_options(self.spec)
        for name, value in env.items():
            argv += ["--env", f"{name}={value}"]
        if "workingDir" in self.spec:
            argv += ["--workdir", self.spec["workingDir"]]
        if command is not None:
            # Kubernetes' command replaces the image's ENTRYPOINT and drops its CMD.
            argv += ["--entrypoint", json.dumps(command)]
        node.runtime.run(*argv, image, *args, timeout=120)
        self.exit_code = None
        self.exited.clear()
        self.running = True
        self.readiness = None
        self._stop_probes = threading.Event()
        started_at = time.monotonic()
        self.started = "startupProbe" not in self.spec
        self.pod.event(f"started container {self.name} (restarts: {self.restarts})")
        threading.Thread(target=self._watch, daemon=True, name=f"wait-{self.name}").start()
        self._start_probes(started_at)

    def _watch(self) -> None:
        waited = subprocess.run(
            self.pod.node.runtime.argv("wait", self.podman_name),
            capture_output=True,
            text=True,
            check=False,
            env=self.pod.node.runtime.env(),
        )
        code = waited.stdout.strip().splitlines()[-1] if waited.stdout.strip() else ""
        self.exit_code = int(code) if code.lstrip("-").isdigit() else -1
        self.running = False
        self.last_exit_at = time.monotonic()
        self._stop_probes.set()
        self.pod.event(f"container {self.name} exited with {self.exit_code}")
        self.exited.set()
        self.pod.container_exited(self)

    def _start_probes(self, started_at: float) -> None:
        stop = self._stop_probes
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = Probe.of(self.spec, kind)
            if probe is None:
                continue
            gate: Callable[[], bool] = (
                (lambda: True) if kind == "startupProbe" else (lambda: self.started)
            )
            worker = ProbeWorker(
                probe,
                self._checker(probe),
                self.pod.node.timing,
                started_at,
                gate,
                self._outcome_handler(probe, stop),
                stop,
            )
            worker.start()

    def _checker(self, probe: Probe) -> Callable[[], ProbeResult]:
        return lambda: run_probe(probe, self.spec, self.pod.obj.ip, self.exec)

    def _outcome_handler(self, probe: Probe, stop: threading.Event) -> Callable[[bool, str], None]:
        def handle(ok: bool, message: str) -> None:
            self.pod.event(
                f"{self.name} {probe.kind}: {'succeeded' if ok else 'failed'}: {message}"
            )
            if probe.kind == "readinessProbe":
                self.readiness = ok
            elif probe.kind == "startupProbe" and ok:
                self.started = True
            elif not ok:
                # A failed startup or liveness probe: the kubelet kills the container.
                stop.set()
                self.pod.probe_failures.append(f"{self.name} {probe.kind}: {message}")
                threading.Thread(target=self.terminate, daemon=True).start()

        return handle

    def exec(self, command: list[str], timeout: float) -> int:
        return self.exec_output(command, timeout).returncode

    def exec_output(self, command: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
        """``kubectl exec``: run ``command`` in the running container."""
        try:
            result = subprocess.run(
                self.pod.node.runtime.argv("exec", self.podman_name, *command),
                capture_output=True,
                check=False,
                timeout=timeout + EXEC_START_ALLOWANCE,
                env=self.pod.node.runtime.env(),
            )
        except subprocess.TimeoutExpired as error:
            raise TimeoutError(str(command)) from error
        return result

    def terminate(self) -> None:
        """preStop, then SIGTERM and the grace period, then SIGKILL (podman stop)."""
        deadline = time.monotonic() + self.pod.grace_period
        pre_stop = (self.spec.get("lifecycle") or {}).get("preStop") or {}
        if "exec" in pre_stop and self.running:
            try:
                self.exec(pre_stop["exec"]["command"], self.pod.grace_period)
            except TimeoutError:
                self.pod.event(f"{self.name} preStop timed out")
        remaining = max(0, int(deadline - time.monotonic()))
        self.pod.node.runtime.run(
            "stop", "-t", str(remaining), self.podman_name, check=False, timeout=remaining + 60
        )

    def kill(self) -> None:
        """SIGKILL, as when the container's process dies (OOM kill, crash)."""
        self.pod.node.runtime.run("kill", "--signal", "KILL", self.podman_name, check=False)


class Pod:
    """One pod; ``start()`` runs its lifecycle in a thread."""

    def __init__(self, obj: PodObject, node: Node) -> None:
        self.obj = obj
        self.node = node
        self.spec = obj.spec
        self.sandbox = f"{node.runtime.run_id}-{obj.name}"
        self.grace_period = int(obj.spec.get("terminationGracePeriodSeconds", 30))
        self.root = node.workdir / obj.name
        self.logdir = self.root / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.volumes = PodVolumes(
            obj, node.store, self.root / "volumes", node.workdir / "pvc", node.tokens
        )
        self.phase = "Pending"
        self.error: str | None = None  # why the pod cannot start
        self.events: list[str] = []
        self.probe_failures: list[str] = []
        self.terminating = False
        self.finished = threading.Event()
        self._began = time.monotonic()
        self.containers: dict[str, Container] = {}
        for spec in obj.spec.get("initContainers", []):
            sidecar = spec.get("restartPolicy") == "Always"
            self.containers[spec["name"]] = Container(self, spec, sidecar=sidecar, init=True)
        for spec in obj.spec["containers"]:
            self.containers[spec["name"]] = Container(self, spec, sidecar=False, init=False)

    def event(self, message: str) -> None:
        self.events.append(f"{time.monotonic() - self._began:6.1f}s {message}")

    def describe(self) -> str:
        """What ``kubectl describe pod`` would tell: phase, error, events, recent logs."""
        lines = [f"pod {self.obj.name} ({self.obj.owner}) {self.obj.ip}: {self.phase}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  {event}" for event in self.events[-40:]]
        for log in sorted(self.logdir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            lines += [f"  --- {log.name}", *(f"  {line}" for line in tail)]
        return "\n".join(lines)

    @property
    def ready(self) -> bool:
        return self.phase == "Running" and all(
            c.ready for c in self.containers.values() if c.sidecar or not c.init
        )

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name=self.obj.name).start()

    def _run(self) -> None:
        try:
            self._create_sandbox()
            self.volumes.set_up()
            for container in self.containers.values():
                if self.terminating:
                    return
                if container.sidecar:
                    container.start()
                    self._wait_started(container)
                elif container.init:
                    if not self._run_to_completion(container):
                        self.phase = "Failed"
                        return
                else:
                    container.start()
            self.phase = "Running"
            self.event("all containers started")
        except ContainerConfigError as error:
            self.error = f"CreateContainerConfigError: {error}"
            self.event(self.error)
            self.finished.set()
        except Exception as error:  # the runner's own failure: report it on the pod
            self.error = f"{type(error).__name__}: {error}"
            self.event(self.error)
            self.finished.set()

    def _create_sandbox(self) -> None:
        argv = ["pod", "create", "--name", self.sandbox, "--label", self.node.runtime.label]
        argv += ["--network", self.node.network.name, "--ip", self.obj.ip]
        argv += ["--hostname", self.obj.name]
        for name, ip in sorted(self.node.hosts().items()):
            argv += ["--add-host", f"{name}:{ip}"]
        self.node.runtime.run(*argv)
        self.node.runtime.run("pod", "start", self.sandbox)
        self.event(f"sandbox {self.sandbox} at {self.obj.ip}")

    def _wait_started(self, container: Container) -> None:
        while not container.started and not self.terminating:
            time.sleep(0.1)

    def _run_to_completion(self, container: Container) -> bool:
        while not self.terminating:
            container.start()
            container.exited.wait()
            if container.exit_code == 0:
                return True
            if container.restart_policy() == "Never":
                return False
            self._back_off(container)
        return False

    def _back_off(self, container: Container) -> None:
        container.restarts += 1
        if container.restarts > 1:
            delay = min(BACKOFF_FIRST * 2 ** (container.restarts - 2), BACKOFF_MAX)
            time.sleep(self.node.timing.seconds(delay))

    def container_exited(self, container: Container) -> None:
        """The kubelet's reaction to an exit: restart, or the pod's end."""
        if self.terminating or (container.init and not container.sidecar):
            return
        policy = container.restart_policy()
        if policy == "Always" or (policy == "OnFailure" and container.exit_code != 0):
            threading.Thread(target=self._restart, args=(container,), daemon=True).start()
            return
        mains = [c for c in self.containers.values() if not c.init]
        if all(c.exit_code is not None and not c.running for c in mains):
            self.phase = "Succeeded" if all(c.exit_code == 0 for c in mains) else "Failed"
            self.event(f"pod {self.phase}")
            # Sidecars are stopped once the containers are done.
            for sidecar in [c for c in self.containers.values() if c.sidecar]:
                sidecar.terminate()
            self.finished.set()

    def _restart(self, container: Container) -> None:
        self._back_off(container)
        if self.terminating:
            return
        try:
            container.start()
        except ContainerConfigError as error:
            self.error = f"CreateContainerConfigError: {error}"
            self.event(self.error)

    def kill(self, name: str) -> None:
        self.containers[name].kill()

    def delete(self) -> None:
        """Stop the containers (then the sidecars, in reverse), remove the sandbox."""
        self.terminating = True
        mains = [c for c in self.containers.values() if not c.init and c.running]
        threads = [threading.Thread(target=c.terminate) for c in mains]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for sidecar in reversed([c for c in self.containers.values() if c.sidecar]):
            if sidecar.running:
                sidecar.terminate()
        self.node.runtime.run("pod", "rm", "-f", "-t", "0", self.sandbox, check=False)
        self.volumes.teardown()
        self.finished.set()
