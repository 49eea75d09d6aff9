"""The order in which ``helm install`` and ``helm test`` create a release's objects.

Helm creates the hooks of one phase one at a time, sorted by weight, then by kind (its
install order) and name, waiting for each Job or Pod to finish; the release's regular
objects come between ``pre-install`` and ``post-install``; ``test`` hooks run on
``helm test``. A hook's ``hook-succeeded`` delete policy removes it once its whole
phase succeeded. So what exists when a hook runs depends on its phase and weight — a
``pre-install`` Job cannot use the release's ServiceAccount, which does not exist yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.chart import Doc

PHASES = ("pre-install", "install", "post-install", "test")

# Helm's InstallOrder (pkg/release/util/kind_sorter.go), the kinds this chart uses.
_KIND_ORDER = [
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
]


@dataclass(frozen=True)
class Step:
    """One object being created, in the ``phase`` of the install."""

    phase: str
    doc: Doc

    @property
    def kind(self) -> str:
        kind: str = self.doc["kind"]
        return kind

    @property
    def name(self) -> str:
        name: str = self.doc["metadata"]["name"]
        return name


def hook_phases(doc: Doc) -> list[str]:
    annotations = doc["metadata"].get("annotations") or {}
    hooks = annotations.get("helm.sh/hook")
    return [hook.strip() for hook in hooks.split(",")] if hooks else []


def _weight(doc: Doc) -> int:
    annotations = doc["metadata"].get("annotations") or {}
    return int(annotations.get("helm.sh/hook-weight", "0"))


def _kind_rank(doc: Doc) -> int:
    kind = doc["kind"]
    return _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)


def _deleted_when_phase_succeeds(doc: Doc) -> bool:
    annotations = doc["metadata"].get("annotations") or {}
    policies = annotations.get("helm.sh/hook-delete-policy", "")
    return "hook-succeeded" in [policy.strip() for policy in policies.split(",")]


def install_steps(docs: list[Doc]) -> Iterator[tuple[Step, frozenset[tuple[str, str]]]]:
    """Every object of ``helm install`` then ``helm test``, in creation order, with the
    (kind, name) of every object that exists at the moment it is created."""
    existing: set[tuple[str, str]] = set()
    for phase in PHASES:
        if phase == "install":
            batch = [doc for doc in docs if not hook_phases(doc)]
            batch.sort(key=lambda doc: (_kind_rank(doc), doc["metadata"]["name"]))
        else:
            batch = [doc for doc in docs if phase in hook_phases(doc)]
            batch.sort(key=lambda doc: (_weight(doc), _kind_rank(doc), doc["metadata"]["name"]))
        for doc in batch:
            step = Step(phase, doc)
            yield step, frozenset(existing)
            existing.add((step.kind, step.name))
        if phase != "install":
            existing -= {
                (doc["kind"], doc["metadata"]["name"])
                for doc in batch
                if _deleted_when_phase_succeeds(doc)
            }
