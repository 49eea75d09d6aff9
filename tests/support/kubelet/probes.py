"""Probes as the kubelet's prober runs them: from outside the pod, against the pod's IP.

``httpGet`` (2xx/3xx is success) and ``tcpSocket`` dial the pod IP from the host, named
ports resolved through the container's ``ports``, so a server listening on the pod's
loopback only fails them, as in a cluster. ``exec`` runs in the container. A worker
probes at once, then every ``periodSeconds``; results before ``initialDelaySeconds``
are not counted; ``successThreshold``/``failureThreshold`` consecutive results change
the outcome. Liveness and readiness wait until the startup probe has succeeded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tests.support.kubelet.objects import Doc

ProbeResult = tuple[bool, str]


@dataclass(frozen=True)
class Timing:
    """How much faster than the spec the clock runs: periods, delays and backoffs are
    multiplied by ``scale``; thresholds are kept, and so are timeouts (a slow answer is
    as slow here as in a cluster)."""

    scale: float = 1.0

    def seconds(self, spec_seconds: float) -> float:
        return spec_seconds * self.scale


@dataclass(frozen=True)
class Probe:
    kind: str  # startupProbe, livenessProbe, readinessProbe
    action: Doc
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, container: Doc, kind: str) -> Probe | None:
        spec = container.get(kind)
        if spec is None:
            return None
        actions = {k: v for k, v in spec.items() if k in ("httpGet", "tcpSocket", "exec", "grpc")}
        if len(actions) != 1 or "grpc" in actions:
            raise NotImplementedError(f"{container['name']} {kind}: {spec}")
        return cls(
            kind=kind,
            action=actions,
            initial_delay=spec.get("initialDelaySeconds", 0),
            period=spec.get("periodSeconds", 10),
            timeout=spec.get("timeoutSeconds", 1),
            success_threshold=spec.get("successThreshold", 1),
            failure_threshold=spec.get("failureThreshold", 3),
        )


def container_port(container: Doc, port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"container {container['name']} has no port named {port!r}")


def run_probe(
    probe: Probe, container: Doc, pod_ip: str, exec_in: Callable[[list[str], float], int]
) -> ProbeResult:
    """One probe, now: (success, what happened)."""
    action = probe.action
    if "tcpSocket" in action:
        spec = action["tcpSocket"]
        address = (spec.get("host", pod_ip), container_port(container, spec["port"]))
        try:
            socket.create_connection(address, timeout=probe.timeout).close()
        except OSError as error:
            return False, f"dial tcp {address[0]}:{address[1]}: {error}"
        return True, "connected"
    if "httpGet" in action:
        spec = action["httpGet"]
        port = container_port(container, spec["port"])
        scheme = spec.get("scheme", "HTTP").lower()
        url = f"{scheme}://{spec.get('host', pod_ip)}:{port}{spec.get('path', '/')}"
        headers = {h["name"]: h["value"] for h in spec.get("httpHeaders", [])}
        try:
            response = httpx.get(url, headers=headers, timeout=probe.timeout, verify=False)  # noqa: S501  (the kubelet does not verify HTTPS probes either)
        except httpx.HTTPError as error:
            return False, f"Get {url}: {error!r}"
        ok = 200 <= response.status_code < 400
        return ok, f"HTTP probe {url}: {response.status_code}"
    command = action["exec"]["command"]
    try:
        code = exec_in(command, probe.timeout)
    except TimeoutError:
        return False, f"command {command} timed out after {probe.timeout}s"
    return code == 0, f"command {command} exited {code}"


class ProbeWorker(threading.Thread):
    """Runs one probe of one container incarnation until ``stop`` is set.

    ``gate()`` false: skip this tick (liveness/readiness before startup succeeded).
    ``on_outcome(success, message)`` is called each time the thresholds decide an
    outcome that differs from the previous one (the first decided outcome included);
    a failing liveness or startup probe's caller kills the container and sets ``stop``.
    """

    def __init__(
        self,
        probe: Probe,
        check: Callable[[], ProbeResult],
        timing: Timing,
        started_at: float,
        gate: Callable[[], bool],
        on_outcome: Callable[[bool, str], None],
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True, name=probe.kind)
        self.probe, self.check, self.timing = probe, check, timing
        self.started_at, self.gate, self.on_outcome, self.stop = started_at, gate, on_outcome, stop

    def run(self) -> None:
        outcome: bool | None = None
        last: bool | None = None
        streak = 0
        delay = self.timing.seconds(self.probe.initial_delay)
        period = self.timing.seconds(self.probe.period)
        while not self.stop.is_set():
            if self.gate() and time.monotonic() - self.started_at >= delay:
                ok, message = self.check()
                streak = streak + 1 if ok == last else 1
                last = ok
                needed = self.probe.success_threshold if ok else self.probe.failure_threshold
                if streak >= needed and ok != outcome and not self.stop.is_set():
                    outcome = ok
                    self.on_outcome(ok, message)
                    if ok and self.probe.kind == "startupProbe":
                        return  # never probed again once the container has started
            self.stop.wait(period)
