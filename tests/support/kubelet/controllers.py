"""The controllers' part: which pods a workload object asks for.

A Deployment makes ``replicas`` pods (1 when unset), raised at once to the
``minReplicas`` of a HorizontalPodAutoscaler that targets it (the HPA enforces its
minimum before it has any metric); a StatefulSet makes ``<name>-<ordinal>`` pods, each
with its own claim per ``volumeClaimTemplates`` entry (``<template>-<pod>``); a Job's
pods are made one at a time by ``release`` (``backoffLimit``).
"""

from __future__ import annotations

import copy
import os

from tests.support.kubelet.objects import Doc, ObjectStore

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


def replicas(workload: Doc, store: ObjectStore) -> int:
    count = int(workload["spec"].get("replicas", 1))
    if workload["kind"] == "Deployment":
        for hpa in store.of_kind("HorizontalPodAutoscaler"):
            target = hpa["spec"]["scaleTargetRef"]
            if target["kind"] == "Deployment" and target["name"] == workload["metadata"]["name"]:
                count = max(count, int(hpa["spec"].get("minReplicas", 1)))
    return count


def pod_templates(workload: Doc, store: ObjectStore) -> list[tuple[str, Doc]]:
    """(pod name, pod template) of each pod the workload's controller creates now."""
    name = workload["metadata"]["name"]
    kind = workload["kind"]
    if kind == "Pod":
        return [(name, {"metadata": workload["metadata"], "spec": copy.deepcopy(workload["spec"])})]
    template = workload["spec"]["template"]
    if kind == "Job":
        return [(f"{name}-{os.urandom(3).hex()}", copy.deepcopy(template))]
    pods: list[tuple[str, Doc]] = []
    for index in range(replicas(workload, store)):
        pod = copy.deepcopy(template)
        if kind == "StatefulSet":
            pod_name = f"{name}-{index}"
            volumes = pod["spec"].setdefault("volumes", [])
            for claim in workload["spec"].get("volumeClaimTemplates", []):
                claim_name = claim["metadata"]["name"]
                volumes.append(
                    {
                        "name": claim_name,
                        "persistentVolumeClaim": {"claimName": f"{claim_name}-{pod_name}"},
                    }
                )
        else:
            pod_name = f"{name}-{os.urandom(3).hex()}"
        pods.append((pod_name, pod))
    return pods
