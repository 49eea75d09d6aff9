"""Helm's order of operations: which objects a phase creates, and in what order.

Helm creates the hooks of one phase one at a time, sorted by weight, then by kind (its
install order) and name, waiting for each Job or Pod to finish; the release's regular
objects come between ``pre-install`` and ``post-install``; ``test`` hooks run on
``helm test``. A hook's ``hook-succeeded`` delete policy removes it once its whole phase
succeeded. So what exists when a hook runs depends on its phase and weight: a
``pre-install`` Job cannot use the release's ServiceAccount, which does not exist yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.kubelet.objects import Doc

# helm's releaseutil.InstallOrder: kinds not listed come last.
INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]

HOOK_ANNOTATION = "helm.sh/hook"


def kind_rank(doc: Doc) -> int:
    kind: str = doc["kind"]
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


def hooks_of(doc: Doc) -> set[str]:
    annotations = doc["metadata"].get("annotations") or {}
    value: str = annotations.get(HOOK_ANNOTATION, "")
    return {hook.strip() for hook in value.split(",") if hook.strip()}


def hook_weight(doc: Doc) -> int:
    annotations = doc["metadata"].get("annotations") or {}
    return int(annotations.get("helm.sh/hook-weight", "0"))


def delete_policies(doc: Doc) -> set[str]:
    annotations = doc["metadata"].get("annotations") or {}
    value: str = annotations.get("helm.sh/hook-delete-policy", "")
    return {policy.strip() for policy in value.split(",") if policy.strip()}


@dataclass(frozen=True)
class InstallPlan:
    """``helm install`` of rendered documents, then ``helm test``."""

    pre_install: list[Doc]
    release: list[Doc]
    post_install: list[Doc]
    test: list[Doc]

    @classmethod
    def of(cls, docs: list[Doc]) -> InstallPlan:
        def hooks(phase: str) -> list[Doc]:
            # helm sorts hooks by weight, then kind, then name.
            found = [doc for doc in docs if phase in hooks_of(doc)]
            return sorted(
                found, key=lambda d: (hook_weight(d), kind_rank(d), d["metadata"]["name"])
            )

        release = [doc for doc in docs if not hooks_of(doc)]
        # A stable sort by kind: documents of one kind keep the order helm rendered them in.
        release.sort(key=kind_rank)
        return cls(hooks("pre-install"), release, hooks("post-install"), hooks("test"))

    def phases(self) -> list[tuple[str, list[Doc]]]:
        return [
            ("pre-install", self.pre_install),
            ("install", self.release),
            ("post-install", self.post_install),
            ("test", self.test),
        ]


def install_steps(docs: list[Doc]) -> Iterator[tuple[str, Doc, frozenset[tuple[str, str]]]]:
    """Every object of ``helm install`` then ``helm test`` in creation order, as (phase,
    object, the (kind, name) of every object that exists when it is created)."""
    existing: set[tuple[str, str]] = set()
    for phase, batch in InstallPlan.of(docs).phases():
        for doc in batch:
            yield phase, doc, frozenset(existing)
            existing.add((doc["kind"], doc["metadata"]["name"]))
        if phase != "install":
            existing -= {
                (doc["kind"], doc["metadata"]["name"])
                for doc in batch
                if "hook-succeeded" in delete_policies(doc)
            }
