"""A Kubernetes API server that answers what Helm's ``lookup`` reads, for
``helm template --dry-run=server``: an upgrade's render against objects already in the
namespace, without a cluster.

It serves the version, discovery of the kinds it is given (Helm maps every rendered
object before it prints any) and GETs of the core objects it holds; everything else is a
404 ``Status``, as the API server answers an object that does not exist.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]


def plural(kind: str) -> str:
    """The resource name of a kind, as Kubernetes forms it for the kinds of this chart."""
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def _discovery(kinds: set[tuple[str, str]]) -> dict[str, Doc]:
    """Discovery documents listing ``kinds`` ((apiVersion, kind), all namespaced): Helm
    maps every rendered object through them before it answers."""
    by_group_version: dict[str, list[Doc]] = {}
    for api_version, kind in sorted(kinds | {("v1", "ConfigMap"), ("v1", "Secret")}):
        by_group_version.setdefault(api_version, []).append(
            {
                "name": plural(kind),
                "singularName": kind.lower(),
                "namespaced": True,
                "kind": kind,
                "verbs": ["get", "list", "create", "patch"],
            }
        )
    documents: dict[str, Doc] = {
        "/version": {
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0",
            "platform": "linux/amd64",
        },
        "/api": {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        },
    }
    groups = []
    for group_version, resources in by_group_version.items():
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        documents[path] = {
            "kind": "APIResourceList",
            "groupVersion": group_version,
            "resources": resources,
        }
        if group_version != "v1":
            group, version = group_version.split("/")
            entry = {"groupVersion": group_version, "version": version}
            groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
    documents["/apis"] = {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    return documents


class LookupApi:
    """The objects ``lookup`` finds, by (namespace, plural, name)."""

    def __init__(self, kinds: set[tuple[str, str]]) -> None:
        self.discovery = _discovery(kinds)
        self.objects: dict[tuple[str, str, str], Doc] = {}
        self.requests: list[str] = []

    def add(self, namespace: str, doc: Doc, release: str) -> None:
        """``doc`` as release ``release`` left it (Helm's ownership labels and annotations)."""
        metadata = doc["metadata"]
        stored = {
            "apiVersion": "v1",
            **doc,
            "metadata": {
                **metadata,
                "namespace": namespace,
                "labels": {**metadata.get("labels", {}), "app.kubernetes.io/managed-by": "Helm"},
                "annotations": {
                    **metadata.get("annotations", {}),
                    "meta.helm.sh/release-name": release,
                    "meta.helm.sh/release-namespace": namespace,
                },
            },
        }
        self.objects[(namespace, plural(doc["kind"]), metadata["name"])] = stored

    def answer(self, path: str) -> tuple[int, Doc]:
        self.requests.append(path)
        path = path.split("?", 1)[0]
        if path in self.discovery:
            return 200, self.discovery[path]
        parts = path.strip("/").split("/")
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"]:
            found = self.objects.get((parts[3], parts[4], parts[5]))
            if found is not None:
                return 200, found
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "code": 404,
            "message": f"{path} not found",
        }


@contextmanager
def serving(api: LookupApi, workdir: Path) -> Iterator[Path]:
    """Serve ``api`` on a free loopback port; yield a kubeconfig that points at it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = api.answer(self.path)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "lookup",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "lookup", "user": {}}],
                "contexts": [
                    {"name": "lookup", "context": {"cluster": "lookup", "user": "lookup"}}
                ],
                "current-context": "lookup",
            }
        )
    )
    kubeconfig.chmod(0o600)
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()
