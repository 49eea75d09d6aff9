"""Services: their names in the pods' /etc/hosts, and a kube-proxy for cluster IPs.

A ClusterIP Service gets a cluster IP (on the host's loopback, ``network``) where
``ServiceProxy`` accepts each of its ports and forwards the connection to the target
port of one of its *ready* endpoints, round robin, as kube-proxy does: readiness decides
who gets traffic, and a connection to an endpoint that died before the kubelet noticed
fails as it would in a cluster. A headless Service's name is its pods' IP. Names are
written in each form a pod may use (``name``, ``name.ns``, ``name.ns.svc``,
``name.ns.svc.cluster.local``), to the /etc/hosts of pods created afterwards: like DNS,
a name only resolves once the Service (and, headless, a pod of it) exists.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from tests.support.kubelet.objects import Doc
from tests.support.kubelet.pods import Pod
from tests.support.kubelet.probes import container_port

CLUSTER_DOMAIN = "cluster.local"


def selects(service: Doc, pod: Pod) -> bool:
    selector: dict[str, str] = service["spec"].get("selector") or {}
    return bool(selector) and all(pod.obj.labels.get(k) == v for k, v in selector.items())


def target_port(pod: Pod, port: Doc) -> int | None:
    """The endpoint port of ``port`` on ``pod`` (a named targetPort: any container's)."""
    target: int | str = port["targetPort"] if "targetPort" in port else port["port"]
    for container in pod.obj.containers():
        try:
            return container_port(container, target)
        except ValueError:
            continue
    return None


def name_forms(name: str, namespace: str) -> list[str]:
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}",
    ]


class ServiceProxy:
    """TCP forwarding from (cluster IP, port) to ready endpoints, on its own event loop."""

    def __init__(self, pods: Callable[[], list[Pod]]) -> None:
        self.pods = pods
        self.refused = 0  # connections accepted while the Service had no ready endpoint
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.base_events.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._turns: dict[tuple[str, int], Iterator[int]] = {}
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _submit(self, coroutine: object) -> Future[object]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]

    def serve(self, service: Doc, cluster_ip: str) -> None:
        for port in service["spec"]["ports"]:
            self._submit(self._listen(service, port, cluster_ip)).result(timeout=10)

    async def _listen(self, service: Doc, port: Doc, cluster_ip: str) -> None:
        key = (cluster_ip, int(port["port"]))
        self._turns[key] = itertools.count()

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await connect(reader, writer)
            finally:
                self._tasks.discard(task)

        async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            endpoints = [
                (pod.obj.ip, number)
                for pod in self.pods()
                if pod.ready and selects(service, pod)
                for number in [target_port(pod, port)]
                if number is not None
            ]
            if not endpoints:
                self.refused += 1
                writer.close()
                return
            ip, number = endpoints[next(self._turns[key]) % len(endpoints)]
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(ip, number)
            except OSError:
                writer.close()
                return
            pair = {writer, upstream_writer}
            self._connections |= pair
            try:
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            finally:
                self._connections -= pair

        server = await asyncio.start_server(forward, cluster_ip, int(port["port"]))
        self._servers.append(server)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._connections):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for server in self._servers:
                await server.wait_closed()

        self._submit(stop()).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
