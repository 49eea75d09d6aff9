"""``helm install`` and ``helm test`` of rendered documents, on a namespace of podman pods.

The order is Helm's: pre-install hooks by weight (each Job run to completion before the
next hook is created, a hook Pod likewise), then the release's objects in Helm's kind
order, then post-install hooks; ``test`` hooks only on ``helm test``. Objects exist in
the namespace from their creation on, so a pre-install hook's pod sees only what existed
before the release and what earlier hooks created. ``hook-succeeded`` hooks are deleted
once they succeed. Workloads' pods start as their objects are created; like a plain
``helm install`` (no ``--wait``), post-install hooks do not wait for them.

No API server runs here by default: a workload whose pods project a ServiceAccount token
(they talk to the Kubernetes API) is created as an object, but its pods are not run;
``not_run`` says which and why, so a test can name what it did not prove. A test that
needs those pods attaches an API server (``attach_api_server``: kmock's emulator, mirrored
from the namespace, see ``api_server``) and then runs them (``run_waiting_workloads``).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.kubelet.admission import PodRefused, admit
from tests.support.kubelet.api_server import (
    ApiMirror,
    ApiServer,
    kubernetes_service,
    root_ca_config_map,
)
from tests.support.kubelet.controllers import WORKLOAD_KINDS, pod_templates, replicas
from tests.support.kubelet.environment import service_links
from tests.support.kubelet.network import ClusterNetwork
from tests.support.kubelet.objects import Doc, ObjectStore, PodObject
from tests.support.kubelet.order import InstallPlan, delete_policies
from tests.support.kubelet.pods import Node, Pod
from tests.support.kubelet.probes import Timing
from tests.support.kubelet.runtime import Runtime
from tests.support.kubelet.services import ServiceProxy, name_forms, selects

# helm's default --timeout for hooks and waits.
HELM_TIMEOUT = 300.0
# The Job controller's back-off between failed pods: 10 s, doubling, at most 6 min.
JOB_BACKOFF_FIRST, JOB_BACKOFF_MAX = 10.0, 360.0


class InstallError(AssertionError):
    """The install (or the test) did what a cluster would report as a failure."""


NO_API_SERVER = (
    "its pods use the Kubernetes API (a projected ServiceAccount token): no API server runs here"
)


def describe(kind: str, doc: Doc) -> str:
    return f"{kind}/{doc['metadata']['name']}"


def needs_api_server(template: Doc) -> bool:
    """Whether a pod talks to the Kubernetes API: it projects a ServiceAccount token, or
    lets the token be automounted."""
    spec = template["spec"]
    projected = any(
        "serviceAccountToken" in source
        for volume in spec.get("volumes", [])
        for source in volume.get("projected", {}).get("sources", [])
    )
    return projected or spec.get("automountServiceAccountToken") is True


class Namespace:
    """One namespace on this machine's "node": objects, Services, pods. Close it."""

    def __init__(
        self,
        runtime: Runtime,
        workdir: Path,
        timing: Timing,
        namespace: str,
        existing: list[Doc],
        external_hosts: dict[str, str],
    ) -> None:
        self.runtime = runtime
        self.timing = timing
        self.store = ObjectStore(namespace, existing)
        self.network = ClusterNetwork(runtime)
        self.external_hosts = dict(external_hosts)
        self.cluster_ips: dict[str, str] = {}
        self.pods: list[Pod] = []
        self.proxy = ServiceProxy(lambda: list(self.pods))
        self.node = Node(runtime, self.store, self.network, timing, workdir, self.hosts, self.links)
        self.history: list[str] = []  # "<phase>: <Kind>/<name> <what happened>"
        self.not_run: dict[str, str] = {}  # "<Kind>/<name>" of a workload → why
        self.workdir = workdir
        self.api: ApiServer | None = None
        self.api_mirror: ApiMirror | None = None

    # -- what pods see -------------------------------------------------------------
    def hosts(self) -> dict[str, str]:
        entries = dict(self.external_hosts)
        for service in self.store.of_kind("Service"):
            name = service["metadata"]["name"]
            address = self.cluster_ips.get(name)
            if address is None:
                members = [pod for pod in self.pods if selects(service, pod)]
                if not members:
                    continue  # a headless Service without pods: no DNS answer yet
                address = members[0].obj.ip
            for form in name_forms(name, self.store.namespace):
                entries[form] = address
        return entries

    def links(self) -> dict[str, str]:
        services = [
            (service, self.cluster_ips[service["metadata"]["name"]])
            for service in self.store.of_kind("Service")
            if service["metadata"]["name"] in self.cluster_ips
        ]
        return service_links(services)

    def service_url(self, name: str, port_name: str) -> str:
        service = self.store.get("Service", name)
        [port] = [p for p in service["spec"]["ports"] if p.get("name") == port_name]
        return f"http://{self.cluster_ips[name]}:{port['port']}"

    def pods_of(self, owner: str) -> list[Pod]:
        return [pod for pod in self.pods if pod.obj.owner == owner]

    # -- creating objects ----------------------------------------------------------
    def create(self, doc: Doc, phase: str) -> list[Pod]:
        """Create ``doc``; a workload's pods are created (given their IPs), not started.

        The release's pods all exist before any starts: their controllers create them
        within moments of each other, while the names they resolve at start (headless
        Services) must already point at them.
        """
        self.store.create(doc)
        self.history.append(f"{phase}: {describe(doc['kind'], doc)} created")
        if doc["kind"] == "Service" and doc["spec"].get("clusterIP") != "None":
            address = self.network.service_ip()
            self.cluster_ips[doc["metadata"]["name"]] = address
            self.proxy.serve(doc, address)
        if doc["kind"] not in WORKLOAD_KINDS or doc["kind"] == "Job":
            return []
        owner = describe(doc["kind"], doc)
        if self.api is None and needs_api_server(pod_templates(doc, self.store)[0][1]):
            self.not_run[owner] = NO_API_SERVER
            self.history.append(f"{phase}: {owner} pods not run: {NO_API_SERVER}")
            return []
        return [
            self._new_pod(name, template, owner)
            for name, template in pod_templates(doc, self.store)
        ]

    def update(self, doc: Doc) -> list[Pod]:
        """An object changed in the API (a ConfigMap an operator rewrote): the pods whose
        volumes the kubelet refreshes from it."""
        self.store.replace(doc)
        if doc["kind"] not in ("ConfigMap", "Secret"):
            return []
        name = doc["metadata"]["name"]
        return [pod for pod in self.pods if pod.volumes.refresh(doc["kind"], name)]

    # -- the Kubernetes API ----------------------------------------------------------
    def attach_api_server(self) -> ApiServer:
        """An API server for the namespace from now on, as a cluster has one: kmock's
        emulator at the ``kubernetes`` Service's address (HTTPS, a CA of the run), the
        ``kube-root-ca.crt`` ConfigMap, the ``kubernetes`` names in pods' /etc/hosts, its
        variables in every container started from now on, its tokens in projected
        volumes, and the namespace mirrored into it."""
        if self.api is not None:
            return self.api
        address = self.network.service_ip()
        api = ApiServer(address, self.workdir, self.store.namespace)
        self.api = api
        for form in ("kubernetes", "kubernetes.default", "kubernetes.default.svc"):
            self.external_hosts[form] = address
        self.external_hosts["kubernetes.default.svc.cluster.local"] = address
        self.store.create(root_ca_config_map(api.ca_pem))
        self.node.api_env = lambda: service_links([kubernetes_service(address)])
        self.node.tokens = api.token
        self.api_mirror = ApiMirror(api, self)
        return api

    def run_waiting_workloads(self) -> list[Pod]:
        """Once an API server is attached: the pods of the workloads ``not_run`` held
        back, created and started."""
        if self.api is None:
            raise RuntimeError("attach_api_server() first")
        started: list[Pod] = []
        for owner in list(self.not_run):
            kind, name = owner.split("/", 1)
            doc = self.store.get(kind, name)
            del self.not_run[owner]
            self.history.append(f"api: {owner} pods created: an API server is attached")
            for pod_name, template in pod_templates(doc, self.store):
                pod = self._new_pod(pod_name, template, owner)
                pod.start()
                started.append(pod)
        return started

    def _new_pod(self, name: str, template: Doc, owner: str) -> Pod:
        admit(template["spec"], self.store, self.runtime, owner)
        obj = PodObject(name, self.store.namespace, template, self.network.pod_ip(), owner)
        pod = Pod(obj, self.node)
        self.pods.append(pod)
        return pod

    def _start_pod(self, name: str, template: Doc, owner: str) -> Pod:
        pod = self._new_pod(name, template, owner)
        pod.start()
        return pod

    def _scale_to_autoscalers(self) -> list[Pod]:
        """Pods that HPAs created after their Deployment (helm's order) ask for."""
        added: list[Pod] = []
        for deployment in self.store.of_kind("Deployment"):
            owner = describe("Deployment", deployment)
            if owner in self.not_run:
                continue
            missing = replicas(deployment, self.store) - len(self.pods_of(owner))
            templates = pod_templates(deployment, self.store)[:missing]
            added += [self._new_pod(name, template, owner) for name, template in templates]
        return added

    def start_external(self, name: str, template: Doc, hostname: str) -> Pod:
        """A pod outside the release (a managed database), reachable at ``hostname``
        from pods created afterwards."""
        pod = self._start_pod(name, template, f"External/{name}")
        self.external_hosts[hostname] = pod.obj.ip
        return pod

    def run_to_completion(self, doc: Doc, phase: str, timeout: float = HELM_TIMEOUT) -> Pod:
        """A hook: a Job (retried up to ``backoffLimit``) or a Pod, to its end."""
        deadline = time.monotonic() + timeout
        if doc["kind"] == "Pod":
            [pod] = self.create(doc, phase)
            pod.start()
            return self._finish(pod, deadline, doc, phase)
        self.create(doc, phase)
        backoff_limit = int(doc["spec"].get("backoffLimit", 6))
        failures = 0
        while True:
            [(name, template)] = pod_templates(doc, self.store)
            pod = self._start_pod(name, template, describe("Job", doc))
            self._finish(pod, deadline, doc, phase, raise_on_failure=False)
            if pod.phase == "Succeeded":
                return pod
            failures += 1
            if failures > backoff_limit:
                raise InstallError(
                    f"{phase}: Job {doc['metadata']['name']} failed: BackoffLimitExceeded\n"
                    + pod.describe()
                )
            delay = min(JOB_BACKOFF_FIRST * 2 ** (failures - 1), JOB_BACKOFF_MAX)
            time.sleep(self.timing.seconds(delay))

    def _finish(
        self, pod: Pod, deadline: float, doc: Doc, phase: str, raise_on_failure: bool = True
    ) -> Pod:
        pod.finished.wait(max(0.0, deadline - time.monotonic()))
        what = describe(doc["kind"], doc)
        if pod.error is not None or not pod.finished.is_set():
            raise InstallError(
                f"{phase}: {what} did not complete (helm: timed out waiting)\n" + pod.describe()
            )
        if pod.phase == "Failed" and raise_on_failure:
            raise InstallError(f"{phase}: {what} failed\n{pod.describe()}")
        return pod

    # -- helm ----------------------------------------------------------------------
    def install(self, plan: InstallPlan) -> None:
        """``helm install``: raises InstallError (or PodRefused) as helm would fail."""
        for phase, hooks in (
            ("pre-install", plan.pre_install),
            ("release", plan.release),
            ("post-install", plan.post_install),
        ):
            if phase == "release":
                pods = [pod for doc in hooks for pod in self.create(doc, phase)]
                pods += self._scale_to_autoscalers()
                for pod in pods:
                    pod.start()
                continue
            for doc in hooks:
                self._hook(doc, phase)

    def test(self, plan: InstallPlan) -> list[Pod]:
        """``helm test``: every test hook to completion; raises InstallError on failure."""
        return [pod for doc in plan.test if (pod := self._hook(doc, "test")) is not None]

    def _hook(self, doc: Doc, phase: str) -> Pod | None:
        if doc["kind"] not in ("Job", "Pod"):
            self.create(doc, phase)
            return None
        try:
            pod = self.run_to_completion(doc, phase)
        except PodRefused as error:
            self.history.append(f"{phase}: {describe(doc['kind'], doc)} refused: {error}")
            raise InstallError(f"{phase}: {error}") from error
        self.history.append(f"{phase}: {describe(doc['kind'], doc)} succeeded")
        if "hook-succeeded" in delete_policies(doc):
            self.store.delete(doc["kind"], doc["metadata"]["name"])
        return pod

    def wait_ready(self, timeout: float) -> None:
        """Every pod of a Deployment or StatefulSet Ready (``helm install --wait``)."""
        owners = ("Deployment/", "StatefulSet/")
        self.wait_pods_ready([p for p in self.pods if p.obj.owner.startswith(owners)], timeout)

    def wait_pods_ready(self, serving: list[Pod], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(pod.ready for pod in serving):
            stuck = [pod for pod in serving if pod.error is not None]
            if stuck or time.monotonic() > deadline:
                waiting = stuck or [pod for pod in serving if not pod.ready]
                raise InstallError("pods not Ready:\n" + "\n".join(p.describe() for p in waiting))
            time.sleep(0.25)

    def close(self) -> list[str]:
        """Delete every pod, the Services and the network; problems, if any."""
        if self.api_mirror is not None:
            self.api_mirror.close()
        for pod in self.pods:
            pod.terminating = True
        problems = self.runtime.remove_all()
        for pod in self.pods:
            pod.volumes.teardown()
        self.proxy.close()
        if self.api is not None:
            self.api.close()
        self.network.close()
        return problems
