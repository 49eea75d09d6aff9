"""An :class:`Observation` from the Deployments, HPAs and Pods kopf's indexes hold.

Pure functions over the objects' dicts: kopf keeps the indexes current from its watches,
the operator never writes to these (Helm-owned) objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.operator.allocation import Surge
from services.operator.apply import PodEndpoint
from services.operator.observation import FixedObservation, Observation, PooledObservation
from services.operator.spec import BudgetSpec, FixedConsumer, PooledConsumer

# Kubernetes' default for a RollingUpdate Deployment without maxSurge.
DEFAULT_MAX_SURGE = "25%"


@dataclass(frozen=True)
class DeploymentFacts:
    name: str
    replicas: int
    max_surge: int | str | None  # None: Recreate (no surge)
    selector: Mapping[str, str]


@dataclass(frozen=True)
class HPAFacts:
    name: str
    max_replicas: int
    desired_replicas: int | None


@dataclass(frozen=True)
class PodFacts:
    name: str
    ip: str | None
    labels: Mapping[str, str]
    ready: bool
    terminating: bool
    finished: bool


def deployment_facts(body: Mapping[str, Any]) -> DeploymentFacts:
    spec = body.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        max_surge = None
    else:
        max_surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", DEFAULT_MAX_SURGE)
    return DeploymentFacts(
        name=body["metadata"]["name"],
        replicas=int(spec.get("replicas", 1)),
        max_surge=max_surge,
        selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
    )


def hpa_facts(body: Mapping[str, Any]) -> HPAFacts:
    spec = body.get("spec") or {}
    desired = (body.get("status") or {}).get("desiredReplicas")
    return HPAFacts(
        name=body["metadata"]["name"],
        max_replicas=int(spec["maxReplicas"]),
        desired_replicas=int(desired) if desired is not None else None,
    )


def pod_facts(body: Mapping[str, Any]) -> PodFacts:
    status = body.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return PodFacts(
        name=body["metadata"]["name"],
        ip=status.get("podIP"),
        labels=dict(body["metadata"].get("labels") or {}),
        ready=ready,
        terminating=bool(body["metadata"].get("deletionTimestamp")),
        finished=status.get("phase") in ("Succeeded", "Failed"),
    )


def observe(
    spec: BudgetSpec,
    deployments: Mapping[str, DeploymentFacts],
    hpas: Mapping[str, HPAFacts],
    pods: Iterable[PodFacts],
) -> Observation:
    pods = list(pods)
    missing: list[str] = []
    pooled = []
    for consumer in spec.pooled:
        deployment = deployments.get(consumer.deployment)
        hpa = _hpa(consumer.horizontal_pod_autoscaler, hpas, missing)
        if deployment is None:
            missing.append(f"Deployment {consumer.deployment}")
            continue
        pooled.append(_pooled(consumer, deployment, hpa, pods))
    fixed = []
    for fixed_consumer in spec.fixed:
        observed = _fixed(fixed_consumer, deployments, hpas, missing)
        if observed is not None:
            fixed.append(observed)
    return Observation(tuple(pooled), tuple(fixed), tuple(missing))


def _hpa(name: str | None, hpas: Mapping[str, HPAFacts], missing: list[str]) -> HPAFacts | None:
    if name is None:
        return None
    hpa = hpas.get(name)
    if hpa is None:
        missing.append(f"HorizontalPodAutoscaler {name}")
    return hpa


def _pooled(
    consumer: PooledConsumer,
    deployment: DeploymentFacts,
    hpa: HPAFacts | None,
    pods: list[PodFacts],
) -> PooledObservation:
    selected = [
        pod
        for pod in pods
        if deployment.selector
        and all(pod.labels.get(k) == v for k, v in deployment.selector.items())
        and not pod.finished
    ]
    desired = hpa.desired_replicas if hpa and hpa.desired_replicas is not None else None
    surge_setting = consumer.max_surge if consumer.max_surge is not None else deployment.max_surge
    return PooledObservation(
        spec=consumer,
        replicas=deployment.replicas,
        desired_replicas=desired if desired is not None else deployment.replicas,
        hpa_max_replicas=hpa.max_replicas if hpa else None,
        surge=Surge.parse(surge_setting),
        # Terminating pods still hold their server connections until they exit.
        pods_present=len(selected),
        ready_pods=tuple(
            PodEndpoint(pod.name, pod.ip, consumer.pgbouncer.port)
            for pod in sorted(selected, key=lambda p: p.name)
            if pod.ready and pod.ip and not pod.terminating
        ),
    )


def _fixed(
    consumer: FixedConsumer,
    deployments: Mapping[str, DeploymentFacts],
    hpas: Mapping[str, HPAFacts],
    missing: list[str],
) -> FixedObservation | None:
    hpa = _hpa(consumer.horizontal_pod_autoscaler, hpas, missing)
    if consumer.deployment is None:
        return FixedObservation(consumer, hpa.max_replicas if hpa else consumer.replicas)
    deployment = deployments.get(consumer.deployment)
    if deployment is None:
        missing.append(f"Deployment {consumer.deployment}")
        return None
    # The worst case: the HPA's maximum, plus a rollout's surge on top.
    replicas = max(hpa.max_replicas, deployment.replicas) if hpa else deployment.replicas
    return FixedObservation(consumer, replicas, Surge.parse(deployment.max_surge).at(replicas))
