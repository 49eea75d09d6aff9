"""The namespace's objects, as the API server holds them while a release is installed."""

from __future__ import annotations

import base64
import threading
from typing import Any

Doc = dict[str, Any]


class ObjectNotFound(LookupError):
    """The object does not exist (yet, or any more) in the namespace."""


class ObjectStore:
    """Objects by kind and name, in one namespace; safe to read from any thread.

    It holds what was created so far, so a pod admitted during a pre-install hook sees
    exactly what an API server would: the objects that existed before the release (given
    to the constructor, e.g. a production ``existingSecret``) and earlier hooks' objects.
    """

    def __init__(self, namespace: str, existing: list[Doc] | None = None) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], Doc] = {}
        # Every namespace has one, created by the ServiceAccount controller.
        self.create({"kind": "ServiceAccount", "metadata": {"name": "default"}})
        for doc in existing or []:
            self.create(doc)

    def create(self, doc: Doc) -> None:
        key = (doc["kind"], doc["metadata"]["name"])
        with self._lock:
            if key in self._objects:
                raise ValueError(f"{key[0]} {key[1]} already exists")
            self._objects[key] = doc

    def replace(self, doc: Doc) -> None:
        """An update of an existing object (``kubectl apply`` of a change, a controller's
        write)."""
        key = (doc["kind"], doc["metadata"]["name"])
        with self._lock:
            if key not in self._objects:
                raise ObjectNotFound(f'{key[0].lower()} "{key[1]}" not found in {self.namespace}')
            self._objects[key] = doc

    def delete(self, kind: str, name: str) -> None:
        with self._lock:
            self._objects.pop((kind, name), None)

    def find(self, kind: str, name: str) -> Doc | None:
        with self._lock:
            return self._objects.get((kind, name))

    def get(self, kind: str, name: str) -> Doc:
        found = self.find(kind, name)
        if found is None:
            raise ObjectNotFound(f'{kind.lower()} "{name}" not found in {self.namespace}')
        return found

    def of_kind(self, kind: str) -> list[Doc]:
        with self._lock:
            return [doc for (k, _), doc in self._objects.items() if k == kind]

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's or a Secret's keys and values (a Secret's decoded, as mounted)."""
        doc = self.get(kind, name)
        data: dict[str, str] = {}
        if kind == "Secret":
            for key, value in (doc.get("data") or {}).items():
                data[key] = base64.b64decode(value).decode()
        else:
            data.update({key: str(value) for key, value in (doc.get("data") or {}).items()})
        # stringData is write-only in the API; an object created from a manifest has it.
        data.update({key: str(value) for key, value in (doc.get("stringData") or {}).items()})
        return data


class PodObject:
    """A pod as its controller created it: metadata, spec, and the IP it was given."""

    def __init__(self, name: str, namespace: str, template: Doc, ip: str, owner: str) -> None:
        self.name = name
        self.namespace = namespace
        self.labels: dict[str, str] = dict(template.get("metadata", {}).get("labels") or {})
        self.spec: Doc = template["spec"]
        self.ip = ip
        self.owner = owner  # "<Kind>/<name>" of the controller, for messages

    def containers(self) -> list[Doc]:
        """Init containers (sidecars included) then containers, as in the spec."""
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]

    def field(self, path: str) -> str:
        """A downward-API ``fieldRef`` value (the fields the kubelet resolves itself)."""
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "status.podIP": self.ip,
        }
        if path.startswith("metadata.labels['") and path.endswith("']"):
            return self.labels.get(path[len("metadata.labels['") : -2], "")
        if path not in values:
            raise NotImplementedError(f"fieldRef {path} is not supported by this runner")
        return str(values[path])
