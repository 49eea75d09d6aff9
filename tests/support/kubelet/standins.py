"""The images the chart's pods run, in the private podman store under the chart's names.

The project's own three come from its Dockerfile (``devstack.release.podman.TARGETS``).
The third-party ones (Redis, Postgres and their exporters) cannot be pulled here: the
stages of ``standins.Containerfile`` stand in for them, built from Debian bookworm's
packages of the same versions, with the upstream images' entrypoints and users. Either
way the built image is tagged with the exact reference the rendered pod spec names, so
the chart's pod specs run unchanged (and a reference nobody built fails admission).
"""

from __future__ import annotations

from pathlib import Path

from devstack.release.podman import REPO_ROOT, TARGETS, Podman, Target
from tests.support.kubelet.objects import Doc

HERE = Path(__file__).resolve().parent
CONTAINERFILE = HERE / "standins.Containerfile"

STANDINS = {
    # the chart's container name -> the stand-in stage for its third-party image
    "redis": Target(
        "standin-redis", "localhost/stampede-standin-redis:7.0", "redis", CONTAINERFILE
    ),
    "postgresql": Target(
        "standin-postgres", "localhost/stampede-standin-postgres:15", "postgres", CONTAINERFILE
    ),
    "redis-exporter": Target(
        "standin-redis-exporter",
        "localhost/stampede-standin-redis-exporter:1.45",
        "redis-exporter",
        CONTAINERFILE,
    ),
    "postgres-exporter": Target(
        "standin-postgres-exporter",
        "localhost/stampede-standin-postgres-exporter:0.11",
        "postgres-exporter",
        CONTAINERFILE,
    ),
}
# The project's repositories (the chart's image.repository defaults) -> Dockerfile target.
OWN = {
    "stampede": "app",
    "stampede-pgbouncer": "pgbouncer",
    "stampede-pgbouncer-exporter": "pgbouncer-exporter",
}


def _containers(docs: list[Doc]) -> list[Doc]:
    found: list[Doc] = []
    for doc in docs:
        if doc["kind"] == "Pod":
            spec = doc["spec"]
        elif doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            spec = doc["spec"]["template"]["spec"]
        else:
            continue
        found += [*spec.get("initContainers", []), *spec["containers"]]
    return found


def source_of(container: Doc) -> Target:
    """Which build provides ``container``'s image."""
    repository = container["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
    if repository in OWN:
        [target] = [t for t in TARGETS if t.name == OWN[repository]]
        return target
    if container["name"] in STANDINS:
        return STANDINS[container["name"]]
    raise LookupError(f"no image source for container {container['name']} ({container['image']})")


def provide_images(podman: Podman, docs: list[Doc]) -> dict[str, float]:
    """Build what ``docs`` need (layers cached) and tag it; seconds each build took."""
    needed = {container["image"]: source_of(container) for container in _containers(docs)}
    seconds: dict[str, float] = {}
    for target in {t.name: t for t in needed.values()}.values():
        context = HERE if target.containerfile is not None else REPO_ROOT
        seconds[target.name] = podman.build(target, context)
    for image, target in needed.items():
        podman.run("tag", target.tag, image)
    return seconds
