"""The Kubernetes objects of the operator's tests, made through kmock's emulated API (so
kopf's watches see every change, as in a cluster), and the operator running in-process.

kopf 1.45 against kmock 0.8 needs three things a real API server does by itself: the
``v1/namespaces`` and ``v1/events`` resources registered for discovery, a
``metadata.resourceVersion`` on every object, and kopf's namespace scanning off (the
operator's ``kopf_settings`` turns it off anyway: a namespaced Role cannot list them)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import kmock
import kopf
from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource

from services.operator.in_cluster import run_in_cluster
from services.operator.settings import OperatorSettings
from services.operator.spec import GROUP, KIND, PLURAL, VERSION

NAMESPACE = "shop"
ConnectionBudget = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
_versions = itertools.count(1)

_VERBS = {"list", "watch", "get", "patch", "create", "delete"}
RESOURCES = {
    f"{GROUP}/{VERSION}/{PLURAL}": kmock.ResourceInfo(
        kind=KIND,
        namespaced=True,
        shortnames={"cb"},
        subresources={"status"},
        verbs=_VERBS,
    ),
    "apps/v1/deployments": kmock.ResourceInfo(kind="Deployment", namespaced=True, verbs=_VERBS),
    "autoscaling/v2/horizontalpodautoscalers": kmock.ResourceInfo(
        kind="HorizontalPodAutoscaler", namespaced=True, verbs=_VERBS
    ),
    "v1/pods": kmock.ResourceInfo(kind="Pod", namespaced=True, verbs=_VERBS),
    "v1/configmaps": kmock.ResourceInfo(kind="ConfigMap", namespaced=True, verbs=_VERBS),
    "v1/secrets": kmock.ResourceInfo(kind="Secret", namespaced=True, verbs=_VERBS),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs=_VERBS),
    "v1/namespaces": kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs=_VERBS),
}


def client_for(url: str) -> AsyncClient:
    """A lightkube client for the emulator (a token it ignores; no proxy from the env)."""
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "kmock", "cluster": {"server": url}}],
            "users": [{"name": "tests", "user": {"token": "kmock-ignores-it"}}],
            "contexts": [
                {
                    "name": "kmock",
                    "context": {"cluster": "kmock", "user": "tests", "namespace": NAMESPACE},
                }
            ],
            "current-context": "kmock",
        }
    )
    return AsyncClient(config, namespace=NAMESPACE, trust_env=False)


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "uid": str(uuid.uuid4()),
        "resourceVersion": str(next(_versions)),
        "creationTimestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator, plus what kopf's Events need: a name made from ``generateName``
    on create, as the API server does."""

    async def _handle(self, request: kmock.Request) -> Any:
        data = request.data
        if isinstance(data, dict) and request.resource is not None and request.name is None:
            metadata = data.setdefault("metadata", {})
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = f"{metadata['generateName']}{next(_versions)}"
            metadata.setdefault("resourceVersion", str(next(_versions)))
        return await super()._handle(request)


@asynccontextmanager
async def emulated_api() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator, kmock.Server(emulator):
        yield emulator


class EmulatedCluster:
    """kmock's emulator, written to over HTTP like kubectl would."""

    def __init__(self, emulator: kmock.KubernetesEmulator) -> None:
        self.emulator = emulator
        for resource, info in RESOURCES.items():
            emulator.resources[resource] = info
        self.url = str(emulator.url).rstrip("/")

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        response = await self.emulator.post(path, json=body)
        assert response.status < 300, await response.text()

    async def _patch(self, path: str, body: dict[str, Any]) -> None:
        body = {
            **body,
            "metadata": {**body.get("metadata", {}), "resourceVersion": str(next(_versions))},
        }
        response = await self.emulator.patch(
            path, json=body, headers={"Content-Type": "application/merge-patch+json"}
        )
        assert response.status < 300, await response.text()

    async def _delete(self, path: str) -> None:
        response = await self.emulator.delete(path)
        assert response.status < 300, await response.text()

    # --- objects ------------------------------------------------------------------

    async def secret(self, name: str, data: Mapping[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name), "data": encoded}
        await self._post(f"/api/v1/namespaces/{NAMESPACE}/secrets", body)

    async def change_secret(self, name: str, data: Mapping[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        await self._patch(f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}", {"data": encoded})

    async def config_map(self, name: str, data: Mapping[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name), "data": data}
        await self._post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", body)

    def config_map_data(self, name: str) -> dict[str, str]:
        data: dict[str, str] = self.emulator.objects["v1/configmaps", NAMESPACE, name]["data"]
        return dict(data)

    async def deployment(
        self, name: str, replicas: int, max_surge: int | str | None = "25%"
    ) -> None:
        strategy: dict[str, Any] = (
            {"type": "Recreate"}
            if max_surge is None
            else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge}}
        )
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(name, generation=1),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "strategy": strategy,
                "template": {"metadata": {"labels": {"app": name}}},
            },
        }
        await self._post(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", body)

    async def scale(self, name: str, replicas: int) -> None:
        await self._patch(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}",
            {"spec": {"replicas": replicas}},
        )

    async def set_max_surge(self, name: str, max_surge: int | str) -> None:
        await self._patch(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}",
            {"spec": {"strategy": {"rollingUpdate": {"maxSurge": max_surge}}}},
        )

    async def hpa(self, name: str, max_replicas: int, desired: int) -> None:
        body = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": max_replicas,
            },
            "status": {"desiredReplicas": desired, "currentReplicas": desired},
        }
        await self._post(
            f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers", body
        )

    async def hpa_desires(self, name: str, desired: int) -> None:
        """What the HPA controller does first when it scales: its status, then the
        Deployment's replicas."""
        await self._patch(
            f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{name}",
            {"status": {"desiredReplicas": desired}},
        )
        await self.scale(name, desired)

    async def pod(self, name: str, app: str, ip: str, ready: bool = True) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": _meta(name, labels={"app": app}),
            "spec": {"containers": [{"name": "api", "image": "stampede"}]},
            "status": {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        await self._post(f"/api/v1/namespaces/{NAMESPACE}/pods", body)

    async def terminate_pod(self, name: str) -> None:
        """A pod being deleted: not Ready, still there until its containers exit (kmock
        removes an object with a deletionTimestamp at once unless a finalizer holds it)."""
        await self._patch(
            f"/api/v1/namespaces/{NAMESPACE}/pods/{name}",
            {
                "metadata": {
                    "deletionTimestamp": datetime.now(UTC).isoformat(),
                    "finalizers": ["tests.stampede.dev/kubelet"],
                },
                "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            },
        )

    async def remove_pod(self, name: str) -> None:
        """The terminated pod's containers exited: the object goes."""
        await self._patch(
            f"/api/v1/namespaces/{NAMESPACE}/pods/{name}", {"metadata": {"finalizers": []}}
        )

    async def budget(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": _meta(name, generation=1),
            "spec": spec,
        }
        await self._post(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}", body)

    async def change_budget(self, name: str, spec: dict[str, Any], generation: int) -> None:
        """A spec change, with the generation bump the API server would make."""
        await self._patch(
            f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{name}",
            {"metadata": {"generation": generation}, "spec": spec},
        )

    async def delete_budget(self, name: str) -> None:
        await self._delete(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{name}")

    def budget_exists(self, name: str) -> bool:
        key = (f"{GROUP}/{VERSION}/{PLURAL}", NAMESPACE, name)
        return key in self.emulator.objects and not self.emulator.objects[key].deleted

    def status(self, name: str) -> dict[str, Any]:
        obj = self.emulator.objects[f"{GROUP}/{VERSION}/{PLURAL}", NAMESPACE, name]
        status: dict[str, Any] = dict(obj.get("status") or {})
        return status

    def condition(self, name: str, condition_type: str) -> dict[str, Any]:
        for condition in self.status(name).get("conditions", []):
            if condition["type"] == condition_type:
                return dict(condition)
        return {}

    def operator_calls(self) -> set[tuple[str, str, str]]:
        """(API group, resource[/subresource], verb) of every request not made by the test
        itself (whose requests carry kmock's own User-Agent); discovery left out."""
        verbs = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create"}
        verbs |= {"UPDATE": "patch", "DELETE": "delete"}
        calls = set()
        for request in self.emulator._requests:
            if request.headers.get("User-Agent", "").startswith("kmock/"):
                continue
            resource = request.resource
            if resource is None or resource.plural is None or request.action is None:
                continue
            plural = resource.plural + (f"/{request.subresource}" if request.subresource else "")
            calls.add((resource.group or "", plural, verbs[request.action.name]))
        return calls

    def events(self) -> list[dict[str, Any]]:
        return [
            dict(obj)
            for (resource, _, _), obj in self.emulator.objects.items()
            if resource.plural == "events" and not obj.deleted
        ]


@asynccontextmanager
async def operator_running(
    cluster: EmulatedCluster, settings: OperatorSettings | None = None, liveness: bool = False
) -> AsyncIterator[None]:
    """The operator's kopf in this event loop, logged in to the emulator, until exit."""
    settings = settings or OperatorSettings(namespace=NAMESPACE, retry_interval_s=0.5)

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=cluster.url, default_namespace=NAMESPACE)

    stop, ready = asyncio.Event(), asyncio.Event()
    client = client_for(cluster.url)
    task = asyncio.create_task(
        run_in_cluster(
            settings,
            client=client,
            login=login,
            liveness=liveness,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=10)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
