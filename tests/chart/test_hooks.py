"""Hook pods find what they need at the moment Helm runs them.

A hook pod that names a ServiceAccount, Secret or ConfigMap that does not exist yet is
refused by the ServiceAccount admission plugin or never started by the kubelet: the hook
never finishes and ``helm install`` times out. What exists depends on the hook's phase
and weight (``tests.support.kubelet.order``).
"""

from __future__ import annotations

from collections.abc import Iterator

from tests.support.chart import Doc, Rendered, containers, pod_spec
from tests.support.kubelet.order import install_steps

# What a namespace has before any release object: its ServiceAccount controller's.
ALWAYS_THERE = frozenset({("ServiceAccount", "default")})


def _needed(doc: Doc) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object the pod cannot start without."""
    spec = pod_spec(doc)
    yield "ServiceAccount", spec.get("serviceAccountName", "default")
    for volume in spec.get("volumes", []):
        if "secret" in volume and not volume["secret"].get("optional"):
            yield "Secret", volume["secret"]["secretName"]
        if "configMap" in volume and not volume["configMap"].get("optional"):
            yield "ConfigMap", volume["configMap"]["name"]
        for source in volume.get("projected", {}).get("sources", []):
            for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if key in source and not source[key].get("optional"):
                    yield kind, source[key]["name"]
    for _, container in containers(doc):
        for source in container.get("envFrom", []):
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if key in source and not source[key].get("optional"):
                    yield kind, source[key]["name"]
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if key in ref and not ref[key].get("optional"):
                    yield kind, ref[key]["name"]


def _user_supplied(scenario: Rendered) -> set[tuple[str, str]]:
    """Objects the values say the user created before installing (``existingSecret``s,
    a ServiceAccount the chart does not create)."""
    supplied: set[tuple[str, str]] = set()
    values = scenario.values

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "existingSecret" and value:
                    supplied.add(("Secret", value))
                else:
                    collect(value)

    collect(values)
    account = values.get("serviceAccount", {})
    if not account.get("create", True) and account.get("name"):
        supplied.add(("ServiceAccount", account["name"]))
    return supplied


def test_every_hook_pod_finds_its_service_account_secrets_and_config_maps(
    scenario: Rendered,
) -> None:
    supplied = _user_supplied(scenario) | ALWAYS_THERE
    missing = []
    for phase, doc, existing in install_steps(scenario.docs):
        if phase == "install" or doc["kind"] not in ("Job", "Pod"):
            continue
        where = f"{phase} {doc['kind']}/{doc['metadata']['name']}"
        for needed in _needed(doc):
            if needed not in existing and needed not in supplied:
                missing.append(f"{where} needs {needed[0]}/{needed[1]}")
    assert not missing, f"{scenario.scenario}: {missing}"
