"""What refuses a pod before any of its containers runs.

At creation, as the API server's ServiceAccount admission plugin does: the pod's
ServiceAccount must exist (the Job or ReplicaSet controller then cannot create the pod
at all). Then, as the kubelet does with ``imagePullPolicy: IfNotPresent`` and no
registry: each image must be in the store. A missing ConfigMap or Secret is not refused
here: the pod is created and its container never starts (``environment``, ``volumes``).
"""

from __future__ import annotations

from devstack.release.podman import PodmanError
from tests.support.kubelet.objects import Doc, ObjectStore
from tests.support.kubelet.runtime import Runtime


class PodRefused(RuntimeError):
    """The pod cannot be created, or cannot pull its images."""


def admit(spec: Doc, store: ObjectStore, runtime: Runtime, owner: str) -> None:
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if store.find("ServiceAccount", account) is None:
        raise PodRefused(
            f"{owner}: pods is forbidden: error looking up service account "
            f'{store.namespace}/{account}: serviceaccount "{account}" not found'
        )
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        try:
            runtime.image_user(container["image"])
        except PodmanError as error:
            raise PodRefused(f"{owner}: ErrImagePull: {error}") from error
