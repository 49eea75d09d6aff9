"""Exactly the Kubernetes API calls the operator makes, as namespaced Role rules.

kopf: list + watch of every watched resource (it never gets one object and, with no
finalizer and no progress storage in use, never patches one), Events created.
kube_client: Secrets and ConfigMaps read, ConfigMaps created and patched, the status
patched. The chart's Role is compared against this list by the chart tests."""

from __future__ import annotations

from typing import TypedDict


class Rule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


REQUIRED_RULES: list[Rule] = [
    {
        "apiGroups": ["stampede.dev"],
        "resources": ["connectionbudgets"],
        "verbs": ["list", "watch"],
    },
    {"apiGroups": ["stampede.dev"], "resources": ["connectionbudgets/status"], "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "verbs": ["list", "watch"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
