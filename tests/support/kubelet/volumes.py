"""A pod's volumes on the host, and each container's mounts of them.

As the kubelet sets them up: configMap, secret and projected volumes are files written
from the objects (``items``, ``defaultMode``, per-item ``mode``), always mounted
read-only (a projected ``serviceAccountToken``: a token of the namespace's API server,
when it has one); emptyDir is a directory (``medium: Memory``: a tmpfs of ``sizeLimit``) shared
by the pod's containers; a StatefulSet's PVC is a directory that outlives its pod. With a
pod ``fsGroup`` every volume's files get that group, group-readable (writable for
emptyDir and PVC), directories set-gid: what ``SetVolumeOwnership`` does. ``subPath``
mounts a path inside the volume. When a ConfigMap or Secret changes, ``refresh`` rewrites
the files of the volumes made from it, as the kubelet's periodic sync does (at once here,
within its sync period in a cluster); a container that mounts a whole volume sees the new
content, one that mounts a ``subPath`` of it keeps a file the kubelet never updates.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.kubelet.environment import ContainerConfigError
from tests.support.kubelet.objects import Doc, ObjectNotFound, ObjectStore, PodObject

_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|k|M|G)?$")
_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_ALWAYS_READ_ONLY = ("configMap", "secret", "projected", "downwardAPI")
DEFAULT_MODE = 0o644


def quantity_bytes(quantity: str) -> int:
    match = _QUANTITY.match(str(quantity))
    if match is None:
        raise NotImplementedError(f"quantity {quantity}")
    return int(match.group(1)) * _UNITS[match.group(2)]


class PodVolumes:
    """The volumes of one pod under ``root``; ``teardown()`` unmounts what it mounted."""

    def __init__(
        self,
        pod: PodObject,
        store: ObjectStore,
        root: Path,
        claims: Path,
        tokens: Callable[[], str] | None = None,
    ) -> None:
        self.pod = pod
        self.tokens = tokens  # the API server's TokenRequest; None: no API server
        self.store = store
        self.root = root
        self.claims = claims  # PVC directories: shared by the pods of a StatefulSet
        self.paths: dict[str, Path] = {}
        self._kinds: dict[str, str] = {}
        self._tmpfs: list[Path] = []
        fs_group = (pod.spec.get("securityContext") or {}).get("fsGroup")
        self.fs_group: int | None = None if fs_group is None else int(fs_group)

    def set_up(self) -> None:
        """Materialize every volume; raises ContainerConfigError like a FailedMount."""
        for volume in self.pod.spec.get("volumes", []):
            name = volume["name"]
            kind = next(k for k in volume if k != "name")
            self._kinds[name] = kind
            path = self.root / name
            path.mkdir(parents=True, exist_ok=True)
            if kind == "emptyDir":
                self._empty_dir(path, volume["emptyDir"] or {})
            elif kind == "persistentVolumeClaim":
                path = self.claims / volume["persistentVolumeClaim"]["claimName"]
                path.mkdir(parents=True, exist_ok=True)
                self._own(path, writable=True)
            elif kind in ("configMap", "secret"):
                self._files(path, volume[kind], kind)
            elif kind == "projected":
                self._projected(path, volume["projected"])
            else:
                raise NotImplementedError(f"volume {name}: {kind} is not supported")
            self.paths[name] = path

    def refresh(self, kind: str, name: str) -> bool:
        """Rewrite the volumes made from ConfigMap or Secret ``name``; whether any was."""
        source_key = {"ConfigMap": ("configMap", "name"), "Secret": ("secret", "secretName")}
        volume_kind, name_field = source_key[kind]
        refreshed = False
        for volume in self.pod.spec.get("volumes", []):
            path = self.paths.get(volume["name"])
            if path is None:
                continue
            if volume_kind in volume and volume[volume_kind][name_field] == name:
                self._files(path, volume[volume_kind], volume_kind)
                refreshed = True
            elif "projected" in volume and any(
                (source.get(volume_kind) or {}).get("name") == name
                for source in volume["projected"].get("sources", [])
            ):
                self._projected(path, volume["projected"])
                refreshed = True
        return refreshed

    def _empty_dir(self, path: Path, spec: Doc) -> None:
        if spec.get("medium") == "Memory":
            options = "mode=0777"
            if "sizeLimit" in spec:
                options += f",size={quantity_bytes(spec['sizeLimit'])}"
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                check=True,
                capture_output=True,
                timeout=10,
            )
            self._tmpfs.append(path)
        path.chmod(0o777)
        self._own(path, writable=True)

    def _write(self, directory: Path, relative: str, text: str, mode: int) -> None:
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def _files(self, path: Path, source: Doc, kind: str) -> None:
        name = source["name"] if kind == "configMap" else source["secretName"]
        try:
            data = self.store.data("ConfigMap" if kind == "configMap" else "Secret", name)
        except ObjectNotFound as error:
            if source.get("optional"):
                return
            raise ContainerConfigError(f"MountVolume.SetUp failed: {error}") from error
        self._items(path, data, source, source.get("defaultMode", DEFAULT_MODE), name)
        self._own(path, writable=False)

    def _items(self, path: Path, data: dict[str, str], source: Doc, mode: int, name: str) -> None:
        items = source.get("items")
        if items is None:
            for key, value in data.items():
                self._write(path, key, value, mode)
            return
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise ContainerConfigError(f"configmap/secret {name}: no key {item['key']}")
            self._write(path, item["path"], data[item["key"]], item.get("mode", mode))

    def _projected(self, path: Path, spec: Doc) -> None:
        mode = spec.get("defaultMode", DEFAULT_MODE)
        for source in spec.get("sources", []):
            if "configMap" in source or "secret" in source:
                kind = "ConfigMap" if "configMap" in source else "Secret"
                ref = source.get("configMap") or source["secret"]
                try:
                    data = self.store.data(kind, ref["name"])
                except ObjectNotFound as error:
                    if ref.get("optional"):
                        continue
                    raise ContainerConfigError(f"MountVolume.SetUp failed: {error}") from error
                self._items(path, data, ref, mode, ref["name"])
            elif "downwardAPI" in source:
                for item in source["downwardAPI"]["items"]:
                    value = self.pod.field(item["fieldRef"]["fieldPath"])
                    self._write(path, item["path"], value, item.get("mode", mode))
            elif "serviceAccountToken" in source and self.tokens is not None:
                token = source["serviceAccountToken"]
                self._write(path, token["path"], self.tokens(), mode)
            else:
                raise NotImplementedError(f"projected source {source} is not supported")
        self._own(path, writable=False)

    def _own(self, path: Path, writable: bool) -> None:
        if self.fs_group is None:
            return
        file_bits = 0o660 if writable else 0o440
        for directory, _, files in os.walk(path):
            os.chown(directory, -1, self.fs_group)
            os.chmod(directory, os.stat(directory).st_mode | 0o2000 | file_bits | 0o110)  # noqa: S103
            for file in files:
                full = os.path.join(directory, file)
                os.chown(full, -1, self.fs_group)
                os.chmod(full, os.stat(full).st_mode | file_bits)

    def mount_options(self, container: Doc) -> list[str]:
        """podman ``--mount`` options for ``container``'s volumeMounts."""
        options: list[str] = []
        for mount in container.get("volumeMounts", []):
            name = mount["name"]
            if name not in self.paths:
                raise ContainerConfigError(f"volumeMount {name}: no such volume in the pod")
            source = self.paths[name]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    # The kubelet creates a missing subPath of a writable volume.
                    source.mkdir(parents=True)
            read_only = mount.get("readOnly", False) or self._kinds[name] in _ALWAYS_READ_ONLY
            spec = f"type=bind,source={source},destination={mount['mountPath']}"
            options += ["--mount", spec + (",ro=true" if read_only else "")]
        return options

    def teardown(self) -> None:
        for path in self._tmpfs:
            subprocess.run(["umount", str(path)], check=False, capture_output=True, timeout=30)
        self._tmpfs.clear()
