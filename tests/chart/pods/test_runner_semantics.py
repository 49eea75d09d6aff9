"""The runner's own rules where they are pure functions: ``$(VAR)`` expansion, Helm's
order, the kubelet's environment. (Pods, probes and Services are proven by test_pods.)"""

from __future__ import annotations

import pytest

from tests.support.kubelet.environment import ContainerConfigError, container_env
from tests.support.kubelet.expansion import expand_with
from tests.support.kubelet.objects import Doc, ObjectStore, PodObject
from tests.support.kubelet.order import InstallPlan
from tests.support.kubelet.scenarios import secret


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$$(A)", "$(A)"),  # escaped
        ("$(MISSING)", "$(MISSING)"),  # unknown: left as written
        ("$(A", "$(A"),  # unterminated
        ("a$b$", "a$b$"),
        ("$$$(A)", "$1"),
    ],
)
def test_expansion_follows_the_kubelet_rules(text: str, expanded: str) -> None:
    assert expand_with(text, {"A": "1", "B": "2"}) == expanded


def test_hooks_by_phase_then_weight_and_the_release_by_helm_kind_order() -> None:
    def doc(kind: str, name: str, hook: str = "", weight: str = "0") -> dict[str, object]:
        annotations = {"helm.sh/hook": hook, "helm.sh/hook-weight": weight} if hook else {}
        return {"kind": kind, "metadata": {"name": name, "annotations": annotations}}

    plan = InstallPlan.of(
        [
            doc("Deployment", "api"),
            doc("Job", "migrate", "pre-install,pre-upgrade", "0"),
            doc("Secret", "migrate-secret", "pre-install", "-10"),
            doc("ServiceAccount", "sa"),
            doc("Pod", "test", "test"),
            doc("Service", "api"),
        ]
    )
    assert [d["metadata"]["name"] for d in plan.pre_install] == ["migrate-secret", "migrate"]
    assert [d["kind"] for d in plan.release] == ["ServiceAccount", "Service", "Deployment"]
    assert [d["metadata"]["name"] for d in plan.test] == ["test"]
    assert plan.post_install == []


def pod(env: list[Doc]) -> tuple[Doc, PodObject]:
    container: Doc = {"name": "c", "image": "i", "env": env}
    template: Doc = {"metadata": {"labels": {}}, "spec": {"containers": [container]}}
    return container, PodObject("p-1", "shop", template, "10.0.0.7", "Pod/p")


def test_env_expands_earlier_entries_and_resolves_secrets_and_the_pod_ip() -> None:
    store = ObjectStore("shop", [secret("db", {"password": "s3cret"})])
    container, obj = pod(
        [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "URL", "value": "pg://u:$(PW)@h/$(LATER)"},
            {"name": "LATER", "value": "x"},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
    )
    env = container_env(container, obj, store, {})
    assert env == {
        "PW": "s3cret",
        "URL": "pg://u:s3cret@h/$(LATER)",
        "LATER": "x",
        "IP": "10.0.0.7",
    }


def test_a_missing_secret_is_a_container_config_error() -> None:
    container, obj = pod(
        [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    )
    with pytest.raises(ContainerConfigError, match="absent"):
        container_env(container, obj, ObjectStore("shop"), {})
