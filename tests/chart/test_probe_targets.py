"""Every network probe reaches a port its process listens on from outside the pod.

The kubelet dials ``tcpSocket`` and ``httpGet`` probes at the pod IP (a ``host`` would be
the node's own address), so a process bound to loopback fails every probe: a native
sidecar that never passes its startup probe is restarted forever, and the containers
after it never start. Each process's bind address is read from what the chart renders
for it (its config file, environment or arguments).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import yaml

from tests.support.chart import Doc, Rendered, containers, pgbouncer_settings, pod_spec

Address = str


def _env(container: Doc, name: str) -> str | None:
    for env in container.get("env", []):
        if env["name"] == name:
            value: str = env.get("value", "")
            return value
    return None


def _host_of(bind: str) -> Address:
    """``host:port`` or ``:port`` → host (empty: every address)."""
    return bind.rpartition(":")[0].strip("[]")


def _pgbouncer(scenario: Rendered, doc: Doc, container: Doc) -> Address:
    [volume] = [v for v in pod_spec(doc)["volumes"] if v["name"] == "pgbouncer-config"]
    ini = scenario.get("ConfigMap", volume["configMap"]["name"])["data"]["pgbouncer.ini"]
    return pgbouncer_settings(ini)["listen_addr"]


def _pgbouncer_exporter(scenario: Rendered, doc: Doc, container: Doc) -> Address:
    [volume] = [v for v in pod_spec(doc)["volumes"] if v["name"] == "pgbouncer-config"]
    config = scenario.get("ConfigMap", volume["configMap"]["name"])["data"]["exporter.yml"]
    host: str = yaml.safe_load(config)["exporter_host"]
    return host


def _api(scenario: Rendered, doc: Doc, container: Doc, port: str) -> Address:
    variable = "STAMPEDE_METRICS__BIND" if port == "metrics" else "STAMPEDE_SERVER__BIND"
    bind = _env(container, variable)
    assert bind is not None, f"{container['name']} sets no {variable}"
    return _host_of(bind)


def _operator(scenario: Rendered, doc: Doc, container: Doc) -> Address:
    addr = _env(container, "STAMPEDE_OPERATOR_HEALTH_ADDR")
    assert addr is not None, "the operator's health endpoint address is not set"
    return addr


def _worker(scenario: Rendered, doc: Doc, container: Doc) -> Address:
    addr = _env(container, "STAMPEDE_WORKER__METRICS_ADDR")
    assert addr is not None
    return addr


def _redis(scenario: Rendered, doc: Doc, container: Doc) -> Address:
    args: list[str] = container.get("args", [])
    return args[args.index("--bind") + 1] if "--bind" in args else "0.0.0.0"


def _redis_exporter(scenario: Rendered, doc: Doc, container: Doc) -> Address:
    bind = _env(container, "REDIS_EXPORTER_WEB_LISTEN_ADDRESS")
    assert bind is not None
    return _host_of(bind)


def _postgres_exporter(scenario: Rendered, doc: Doc, container: Doc) -> Address:
    [flag] = [a for a in container.get("args", []) if a.startswith("--web.listen-address=")]
    return _host_of(flag.partition("=")[2])


BindAddress = Callable[[Rendered, Doc, Doc], Address]

# How each container of the chart says where its process listens. A new container with a
# network probe needs its rule here: the test cannot know it is reachable otherwise.
BIND_ADDRESSES: dict[str, BindAddress] = {
    "pgbouncer": _pgbouncer,
    "pgbouncer-exporter": _pgbouncer_exporter,
    "worker": _worker,
    "operator": _operator,
    "redis": _redis,
    "redis-exporter": _redis_exporter,
    "postgres-exporter": _postgres_exporter,
}


def _probe_port(probe: Doc) -> str | int | None:
    for action in ("tcpSocket", "httpGet", "grpc"):
        if action in probe:
            port: str | int = probe[action]["port"]
            assert "host" not in probe[action], "a probe host is the node's address"
            return port
    return None  # exec


def _reachable_from_outside(address: Address) -> bool:
    if address in ("", "*", "::"):
        return True
    return not ipaddress.ip_address(address).is_loopback


def test_every_network_probe_targets_a_port_bound_beyond_loopback(scenario: Rendered) -> None:
    unreachable = []
    for doc in scenario.workloads():
        for _, container in containers(doc):
            names = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = _probe_port(container.get(kind, {}))
                if port is None:
                    continue
                assert port in names or port in names.values(), (container["name"], port)
                name = container["name"]
                if name == "api":
                    address = _api(scenario, doc, container, str(port))
                else:
                    assert name in BIND_ADDRESSES, f"no bind-address rule for container {name}"
                    address = BIND_ADDRESSES[name](scenario, doc, container)
                if not _reachable_from_outside(address):
                    where = f"{doc['metadata']['name']}/{name} {kind} → {port}"
                    unreachable.append(f"{where} (listens on {address})")
    assert not unreachable, f"{scenario.scenario}: probes the kubelet cannot reach: {unreachable}"
