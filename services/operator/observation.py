"""What runs, as the reconcile needs it: each consumer's replica counts and Ready pods.

Built from the Kubernetes API (``kube_observation``) or from a budget file's ``local:``
block (``standalone``); the reconcile does not know which."""

from __future__ import annotations

from dataclasses import dataclass

from services.operator.allocation import FixedDemand, PooledDemand, Surge
from services.operator.apply import PodEndpoint
from services.operator.spec import FixedConsumer, PooledConsumer


@dataclass(frozen=True)
class PooledObservation:
    spec: PooledConsumer
    replicas: int  # the Deployment's spec.replicas
    desired_replicas: int  # the HPA's status.desiredReplicas, else replicas
    hpa_max_replicas: int | None
    surge: Surge
    pods_present: int  # pods of the Deployment that exist (rollouts: old and new)
    ready_pods: tuple[PodEndpoint, ...]

    @property
    def planned_replicas(self) -> int:
        return max(self.replicas, self.desired_replicas)

    def demand(self) -> PooledDemand:
        return PooledDemand(
            name=self.spec.name,
            replicas=self.planned_replicas,
            min_pool=self.spec.min_pool_size,
            max_pool=self.spec.max_pool_size,
            weight=self.spec.weight,
            surge=self.surge,
            pods_present=self.pods_present,
        )


@dataclass(frozen=True)
class FixedObservation:
    spec: FixedConsumer
    replicas: int  # worst case: the HPA's maxReplicas, else the Deployment's or spec replicas
    surge: int = 0

    def demand(self) -> FixedDemand:
        return FixedDemand(
            name=self.spec.name,
            pods=self.replicas + self.surge,
            connections_per_pod=self.spec.connections_per_pod,
        )


@dataclass(frozen=True)
class Observation:
    pooled: tuple[PooledObservation, ...]
    fixed: tuple[FixedObservation, ...]
    # Objects the spec names that do not exist ("Deployment stampede-api"): nothing is
    # computed from a partial picture.
    missing: tuple[str, ...] = ()
