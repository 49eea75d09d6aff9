"""The namespace's Kubernetes API, for the pods that talk to it: kmock's emulator.

A cluster's pods reach the API server at the ``kubernetes`` Service of the ``default``
namespace (``KUBERNETES_SERVICE_HOST``/``PORT``, HTTPS on 443), trusting the cluster CA of
the ``kube-root-ca.crt`` ConfigMap and authenticating with a projected ServiceAccount
token. Here the emulator (the same kmock 0.8 emulator the operator's in-process tests
use, with their workarounds) listens with TLS on a Service IP of the run, its certificate
signed by a throwaway CA made for the run; the test itself talks to it over plain HTTP on
a loopback port.

``ApiMirror`` keeps it in step with the runner, as the controllers of a cluster would:
the namespace's objects are created in the API as the release creates them; each pod's
IP and Ready state is its status; a Deployment scaled by its HPA shows the HPA's replica
count, the HPA its desired replicas; and a ConfigMap written through the API (an
operator's write) goes back to the runner, whose kubelet refreshes the volumes made from
it. What the test changes through the API afterwards (an HPA's desired replicas) stays
as the test set it: an object is mirrored into the API once, at its creation.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import secrets
import ssl
import subprocess
import threading
import uuid
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import aiohttp.test_utils
import kmock

from tests.support.emulated_cluster import RESOURCES, Emulator
from tests.support.kubelet.objects import Doc

if TYPE_CHECKING:
    from tests.support.kubelet.pods import Pod
    from tests.support.kubelet.release import Namespace

_T = TypeVar("_T")
_versions = itertools.count(10_000)
HTTPS_PORT = 443
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
MIRROR_PERIOD = 0.2
# Kind -> (the API path's prefix, the emulator's resource key) of what the mirror carries.
PATHS = {
    "Deployment": ("/apis/apps/v1", "apps/v1/deployments"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "autoscaling/v2/horizontalpodautoscalers"),
    "Pod": ("/api/v1", "v1/pods"),
    "ConfigMap": ("/api/v1", "v1/configmaps"),
    "Secret": ("/api/v1", "v1/secrets"),
    "ConnectionBudget": (
        "/apis/stampede.dev/v1alpha1",
        "stampede.dev/v1alpha1/connectionbudgets",
    ),
}


def _plain(value: Any) -> Any:
    """kmock's views of an object as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _plural(kind: str) -> str:
    return PATHS[kind][1].rsplit("/", 1)[1]


def make_certificates(directory: Path, address: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``address`` and the names of the
    ``kubernetes`` Service: (ca.crt, server.crt, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names.append("kubernetes.default.svc.cluster.local")
    san = ",".join([f"IP:{address}", *(f"DNS:{name}" for name in names)])
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    ca = ["-days", "2", "-subj", "/CN=stampede-test-cluster-ca"]
    signed = ["-CAcreateserial", "-out", crt, "-days", "2", "-extfile", extensions]
    for argv in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt, *ca],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=api"],
        ["x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, *signed],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True, timeout=60)
    return ca_crt, crt, key


def _tls_server(tls: ssl.SSLContext) -> type[aiohttp.test_utils.RawTestServer]:
    """aiohttp's raw test server with TLS (it takes ``ssl`` only in ``start_server``)."""

    class TlsServer(aiohttp.test_utils.RawTestServer):
        async def start_server(
            self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
        ) -> None:
            await super().start_server(loop=loop, ssl=tls, **kwargs)

    return TlsServer


class ApiServer:
    """kmock's emulator on its own event loop thread: HTTPS on ``address:443`` for the
    pods, HTTP on loopback for the test. ``close()`` stops it."""

    def __init__(self, address: str, workdir: Path, namespace: str) -> None:
        self.address, self.port, self.namespace = address, HTTPS_PORT, namespace
        self.ca_file, cert, key = make_certificates(workdir / "api-server-tls", address)
        self.ca_pem = self.ca_file.read_text()
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stop = asyncio.Event()
        self._started = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self._ready = threading.Event()
        if not self._ready.wait(30):
            raise RuntimeError("the emulated API server did not start")

    async def _serve(self) -> None:
        async with Emulator() as emulator:
            for resource, info in RESOURCES.items():
                emulator.resources[resource] = info
            tls_server = _tls_server(self._tls)
            async with (
                kmock.Server(emulator, host=self.address, port=self.port, server_cls=tls_server),
                kmock.Server(emulator, host="127.0.0.1") as plain,
                aiohttp.ClientSession(base_url=str(plain.url)) as client,
            ):
                self.emulator, self.client, self.url = emulator, client, str(plain.url)
                self._ready.set()
                await self._stop.wait()

    def call(self, coroutine: Coroutine[Any, Any, _T], timeout: float = 30) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def token(self) -> str:
        """A ServiceAccount token as the kubelet's TokenRequest returns it (kmock
        authenticates nobody; the pod still reads it from the path a cluster puts it)."""
        return "test-token-" + secrets.token_hex(16)

    # -- the objects, as kubectl would write them --------------------------------------
    def path(self, kind: str, name: str | None = None) -> str:
        prefix = PATHS[kind][0]
        base = f"{prefix}/namespaces/{self.namespace}/{_plural(kind)}"
        return base if name is None else f"{base}/{name}"

    async def _request(self, method: str, path: str, body: Doc | None = None) -> Doc:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        async with self.client.request(method, path, json=body, headers=headers) as response:
            text = await response.text()
            if response.status >= 300:
                raise AssertionError(f"{method} {path}: {response.status} {text}")
            return await response.json(content_type=None) if text else {}

    def create(self, doc: Doc) -> None:
        body = copy.deepcopy(doc)
        metadata = body.setdefault("metadata", {})
        metadata["namespace"] = self.namespace
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("generation", 1)
        metadata.setdefault("creationTimestamp", datetime.now(UTC).isoformat(timespec="seconds"))
        if body["kind"] == "Secret" and body.get("stringData"):
            # The API server stores stringData as data.
            data = body.setdefault("data", {}) or {}
            for key, value in body.pop("stringData").items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            body["data"] = data
        self.call(self._request("POST", self.path(body["kind"]), body))

    def patch(self, kind: str, name: str, body: Doc) -> None:
        """A merge patch (status included: kmock has no separate status storage), with the
        new resourceVersion the API server would give the object."""
        body = {
            **body,
            "metadata": {**body.get("metadata", {}), "resourceVersion": str(next(_versions))},
        }
        self.call(self._request("PATCH", self.path(kind, name), body))

    def delete(self, kind: str, name: str) -> None:
        self.call(self._request("DELETE", self.path(kind, name)))

    def get(self, kind: str, name: str) -> Doc | None:
        """The object as the API holds it now (None: there is none)."""
        try:
            found = self.emulator.objects[PATHS[kind][1], self.namespace, name]
        except KeyError:
            return None
        return None if found.deleted else _plain(found)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._started.result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


def root_ca_config_map(ca_pem: str) -> Doc:
    """What kube-controller-manager's root-ca-cert-publisher puts in every namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA_CONFIGMAP},
        "data": {"ca.crt": ca_pem},
    }


def kubernetes_service(address: str) -> tuple[Doc, str]:
    """The ``default/kubernetes`` Service, for the env the kubelet gives every container."""
    service = {
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"ports": [{"name": "https", "port": HTTPS_PORT, "protocol": "TCP"}]},
    }
    return service, address


class ApiMirror:
    """The runner's namespace, mirrored into the API every ``MIRROR_PERIOD`` (see the
    module's docstring); ``close()`` stops it. ``errors`` keeps what a sync could not do."""

    def __init__(self, api: ApiServer, namespace: Namespace) -> None:
        self.api, self.namespace = api, namespace
        self.errors: list[str] = []
        self._created: set[tuple[str, str]] = set()
        self._pod_states: dict[str, tuple[str, bool]] = {}
        self._config_maps: dict[str, dict[str, str]] = {}  # name -> the data last in step
        self._stop = threading.Event()
        self.sync()
        self._thread = threading.Thread(target=self._run, daemon=True, name="api-mirror")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(MIRROR_PERIOD):
            try:
                self.sync()
            except Exception as error:  # kept for the test's message; the next sync retries
                self.errors.append(f"{type(error).__name__}: {error}")

    def sync(self) -> None:
        store = self.namespace.store
        for kind in PATHS:
            if kind == "Pod":
                continue
            for doc in store.of_kind(kind):
                name = doc["metadata"]["name"]
                if (kind, name) not in self._created:
                    self.api.create(self._as_created(doc))
                    self._created.add((kind, name))
                    if kind == "ConfigMap":
                        self._config_maps[name] = dict(doc.get("data") or {})
        for kind, name in sorted(self._created):
            if store.find(kind, name) is None:
                self.api.delete(kind, name)  # a hook-succeeded hook's objects
                self._created.discard((kind, name))
        for pod in list(self.namespace.pods):
            self._sync_pod(pod)
        self._take_back_config_maps()

    def _as_created(self, doc: Doc) -> Doc:
        """``doc`` with what the cluster's controllers add as it is created: a
        Deployment's replicas as its HPA set them, an HPA's status."""
        body = copy.deepcopy(doc)
        kind = body["kind"]
        if kind == "Deployment":
            owner = f"Deployment/{body['metadata']['name']}"
            count = len(self.namespace.pods_of(owner)) or body["spec"].get("replicas", 1)
            body["spec"].setdefault("replicas", count)
            body["status"] = {"replicas": count, "observedGeneration": 1}
        if kind == "HorizontalPodAutoscaler":
            target = body["spec"]["scaleTargetRef"]["name"]
            count = len(self.namespace.pods_of(f"Deployment/{target}"))
            count = count or int(body["spec"].get("minReplicas", 1))
            body["status"] = {"currentReplicas": count, "desiredReplicas": count}
        return body

    def _sync_pod(self, pod: Pod) -> None:
        state = (pod.phase, pod.ready)
        name = pod.obj.name
        if self._pod_states.get(name) == state:
            return
        status = {
            "phase": state[0],
            "podIP": pod.obj.ip,
            "podIPs": [{"ip": pod.obj.ip}],
            "conditions": [{"type": "Ready", "status": "True" if pod.ready else "False"}],
        }
        if name not in self._pod_states:
            kind, _, owner = pod.obj.owner.partition("/")
            labels = dict(pod.obj.labels)
            body: Doc = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": pod.obj.spec,
                "status": status,
            }
            if kind in ("Deployment", "StatefulSet", "Job"):
                body["metadata"]["annotations"] = {"tests.stampede.dev/owner": f"{kind}/{owner}"}
            self.api.create(body)
        else:
            self.api.patch("Pod", name, {"status": status})
        self._pod_states[name] = state

    def _take_back_config_maps(self) -> None:
        for name, seen in list(self._config_maps.items()):
            current = self.api.get("ConfigMap", name)
            data = dict((current or {}).get("data") or {})
            if current is None or data == seen:
                continue
            self._config_maps[name] = data
            stored = self.namespace.store.find("ConfigMap", name)
            if stored is not None and stored.get("data") != data:
                self.namespace.update({**stored, "data": data})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
