"""Every pod meets the Pod Security Standards' ``restricted`` profile.

A namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` admits only such
pods; the API server checks them at admission, which ``helm template`` never does. The
rules are Kubernetes' (https://kubernetes.io/docs/concepts/security/pod-security-standards/),
checked field by field on every pod template the chart renders.
"""

from __future__ import annotations

from collections.abc import Iterator

from tests.support.chart import Doc, Rendered, containers, pod_spec

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}


def _violations(doc: Doc) -> Iterator[str]:
    pod = pod_spec(doc)
    pod_context = pod.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            yield f"{host} is set"
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            yield f"volume {volume['name']} is {sorted(kinds)}"
    if pod_context.get("sysctls"):
        yield "sysctls are set"
    for _, container in containers(doc):
        name = container["name"]
        context = container.get("securityContext", {})
        if context.get("privileged"):
            yield f"{name}: privileged"
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation is not false"
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            yield f"{name}: does not drop ALL capabilities"
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            yield f"{name}: adds capabilities {capabilities['add']}"
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            yield f"{name}: runAsNonRoot is not true"
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            yield f"{name}: runs as uid 0"
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        if seccomp.get("type") not in ALLOWED_SECCOMP:
            yield f"{name}: seccomp profile {seccomp.get('type')}"
        if any(port.get("hostPort") for port in container.get("ports", [])):
            yield f"{name}: uses a host port"
        if context.get("procMount", "Default") != "Default":
            yield f"{name}: procMount {context['procMount']}"


def test_every_pod_meets_the_restricted_profile(scenario: Rendered) -> None:
    violations = [
        f"{doc['kind']}/{doc['metadata']['name']}: {violation}"
        for doc in scenario.workloads()
        for violation in _violations(doc)
    ]
    assert not violations, f"{scenario.scenario}: {violations}"
