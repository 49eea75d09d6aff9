"""A container's environment, built as the kubelet builds it (``makeEnvironmentVariables``).

In order, later entries winning: the Service links of the namespace's Services (when
``enableServiceLinks``), ``envFrom`` sources in order (with their ``prefix``), then
``env`` in order, each value ``$(VAR)``-expanded against what precedes it. A missing
ConfigMap, Secret or key that is not ``optional`` is the kubelet's
``CreateContainerConfigError``: the container never starts.
"""

from __future__ import annotations

import re

from tests.support.kubelet.expansion import expand_with
from tests.support.kubelet.objects import Doc, ObjectNotFound, ObjectStore, PodObject

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ContainerConfigError(RuntimeError):
    """CreateContainerConfigError: the container's env or volumes cannot be built."""


def service_links(services: list[tuple[Doc, str]]) -> dict[str, str]:
    """``<NAME>_SERVICE_HOST`` and friends of Services with a cluster IP (name, IP)."""
    env: dict[str, str] = {}
    for service, ip in services:
        name = service["metadata"]["name"].upper().replace("-", "_")
        ports = service["spec"].get("ports") or []
        if not ports:
            continue
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if "name" in port:
                port_name = port["name"].upper().replace("-", "_")
                env[f"{name}_SERVICE_PORT_{port_name}"] = str(port["port"])
        protocol = ports[0].get("protocol", "TCP").lower()
        env[f"{name}_PORT"] = f"{protocol}://{ip}:{ports[0]['port']}"
        for port in ports:
            proto = port.get("protocol", "TCP")
            prefix = f"{name}_PORT_{port['port']}_{proto}"
            env[prefix] = f"{proto.lower()}://{ip}:{port['port']}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


def _source_data(store: ObjectStore, kind: str, ref: Doc) -> dict[str, str] | None:
    try:
        return store.data(kind, ref["name"])
    except ObjectNotFound as error:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(str(error)) from error


def _key_ref(store: ObjectStore, kind: str, ref: Doc) -> str | None:
    data = _source_data(store, kind, ref)
    if data is None:
        return None
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
    return data[ref["key"]]


def container_env(
    container: Doc, pod: PodObject, store: ObjectStore, links: dict[str, str]
) -> dict[str, str]:
    """The container's environment variables, expanded; raises ContainerConfigError."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        data: dict[str, str] | None
        if "configMapRef" in source:
            data = _source_data(store, "ConfigMap", source["configMapRef"])
        else:
            data = _source_data(store, "Secret", source["secretRef"])
        for key, text in (data or {}).items():
            # The kubelet skips (and reports) keys that are not valid variable names.
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = text
    for item in container.get("env", []):
        value: str | None
        if "valueFrom" not in item:
            value = expand_with(item.get("value", ""), env, links)
        else:
            ref = item["valueFrom"]
            if "secretKeyRef" in ref:
                value = _key_ref(store, "Secret", ref["secretKeyRef"])
            elif "configMapKeyRef" in ref:
                value = _key_ref(store, "ConfigMap", ref["configMapKeyRef"])
            elif "fieldRef" in ref:
                value = pod.field(ref["fieldRef"]["fieldPath"])
            else:
                raise NotImplementedError(f"env {item['name']}: {ref} is not supported")
        if value is not None:
            env[item["name"]] = value
    if pod.spec.get("enableServiceLinks", True):
        return {**links, **env}
    return env


def command_line(container: Doc, env: dict[str, str]) -> tuple[list[str] | None, list[str]]:
    """``command`` (None: the image's entrypoint) and ``args``, ``$(VAR)``-expanded."""
    command = container.get("command")
    args = [expand_with(arg, env) for arg in container.get("args", [])]
    if command is None:
        return None, args
    return [expand_with(part, env) for part in command], args
