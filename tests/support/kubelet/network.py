"""Where pods and Services live: a bridge network of the run's own and a Service range.

Pods get static addresses on a podman bridge network created for the run (never the
default ``podman`` network). Service cluster IPs come from a second private range and are
added to the host's loopback interface: a pod reaches them through its default route
(the bridge gateway, i.e. the host), and the host's kube-proxy stand-in
(``services.ServiceProxy``) listens on them. Both ranges are chosen among private /24s
that no interface or route of the machine uses.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import threading
from pathlib import Path

from tests.support.kubelet.runtime import RUN_LABEL, Runtime

# Where a run records the loopback addresses it added, so a sweep can remove them after
# the run was killed.
ADDRESS_RECORDS = Path(__file__).resolve().parents[3] / ".cache" / "podman" / "kubelet-addresses"


def _used_networks() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    for command in (["ip", "-j", "addr"], ["ip", "-j", "route"]):
        result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=10)
        for entry in json.loads(result.stdout):
            for info in entry.get("addr_info", []):
                if info.get("family") == "inet":
                    used.append(
                        ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", False)
                    )
            destination = entry.get("dst", "")
            if destination and destination != "default" and ":" not in destination:
                used.append(ipaddress.IPv4Network(destination, strict=False))
    return used


def _free_subnets(count: int, taken: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    chosen: list[ipaddress.IPv4Network] = []
    while len(chosen) < count:
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(other) for other in [*taken, *chosen]):
            chosen.append(candidate)
    return chosen


class ClusterNetwork:
    """The run's pod network and Service range; ``close()`` removes what it added."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.name = f"kubelet-{runtime.run_id}"
        podman_networks = runtime.run(
            "network", "ls", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}"
        )
        taken = _used_networks()
        taken += [ipaddress.IPv4Network(s) for s in podman_networks.stdout.split() if ":" not in s]
        self.pod_subnet, self.service_subnet = _free_subnets(2, taken)
        self._pod_hosts = self.pod_subnet.hosts()
        self.gateway = str(next(self._pod_hosts))
        self._service_hosts = self.service_subnet.hosts()
        self._lock = threading.Lock()
        self._addresses: list[str] = []
        self._record = ADDRESS_RECORDS / runtime.run_id
        # No DNS server in the pods: Service names go to /etc/hosts, as resolved at start.
        runtime.run(
            "network",
            "create",
            "--disable-dns",
            "--label",
            runtime.label,
            "--label",
            f"{RUN_LABEL}.network=1",
            "--subnet",
            str(self.pod_subnet),
            "--gateway",
            self.gateway,
            self.name,
        )

    def pod_ip(self) -> str:
        with self._lock:
            return str(next(self._pod_hosts))

    def service_ip(self) -> str:
        """A fresh cluster IP, on the host's loopback until ``close()``."""
        with self._lock:
            address = str(next(self._service_hosts))
            self._addresses.append(address)
            ADDRESS_RECORDS.mkdir(parents=True, exist_ok=True)
            self._record.write_text("\n".join(self._addresses) + "\n")
        subprocess.run(
            ["ip", "addr", "add", f"{address}/32", "dev", "lo"],
            check=True,
            capture_output=True,
            timeout=10,
        )
        return address

    def close(self) -> None:
        for address in self._addresses:
            _remove_loopback_address(address)
        self._record.unlink(missing_ok=True)


def _remove_loopback_address(address: str) -> None:
    subprocess.run(
        ["ip", "addr", "del", f"{address}/32", "dev", "lo"],
        check=False,
        capture_output=True,
        timeout=10,
    )


def sweep_abandoned_addresses() -> None:
    """Remove loopback addresses that runs of processes now gone added."""
    if not ADDRESS_RECORDS.is_dir():
        return
    for record in ADDRESS_RECORDS.iterdir():
        pid = record.name.split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            for address in record.read_text().split():
                _remove_loopback_address(address)
            record.unlink(missing_ok=True)
