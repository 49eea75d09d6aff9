"""The chart under test: helm, its rendered documents, and ways to read them."""

from __future__ import annotations

import configparser
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


CHART = REPO_ROOT / "charts" / "stampede"


# The chart's own CustomResourceDefinitions (Helm installs them before the templates).
CRDS = CHART / "crds"


SCENARIOS = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*.yaml"))


RELEASE = "stampede"


NAMESPACE = "shop"


# What a cluster with kube-prometheus-stack serves: the monitoring objects render with
# their default ("auto") setting.
MONITORING_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)


# The oldest Kubernetes with native sidecars on by default, and a current one.
KUBE_VERSIONS = ("1.29.0", "1.33.0")


Doc = dict[str, Any]


class RenderError(Exception):
    """``helm template`` refused the values; the message is helm's."""


@dataclass(frozen=True)
class Rendered:
    """One scenario's documents, with lookups the tests need."""

    scenario: str
    values: Mapping[str, Any]
    docs: list[Doc]

    def kinds(self, *kinds: str) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] in kinds]

    def get(self, kind: str, name: str) -> Doc:
        for doc in self.docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{self.scenario}: no {kind} {name}")

    def find(self, kind: str, name: str) -> Doc | None:
        try:
            return self.get(kind, name)
        except KeyError:
            return None

    def workloads(self) -> list[Doc]:
        return self.kinds("Deployment", "StatefulSet", "Job", "Pod")


def pod_spec(doc: Doc) -> Doc:
    if doc["kind"] == "Pod":
        spec: Doc = doc["spec"]
        return spec
    template: Doc = doc["spec"]["template"]["spec"]
    return template


def containers(doc: Doc) -> Iterable[tuple[str, Doc]]:
    """(kind of container, container) of a workload: 'container', 'sidecar', 'init'."""
    spec = pod_spec(doc)
    for container in spec.get("initContainers", []):
        yield ("sidecar" if container.get("restartPolicy") == "Always" else "init"), container
    for container in spec["containers"]:
        yield "container", container


class Helm:
    def __init__(self, binary: Path):
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, check=False, timeout=120
        )

    def template(
        self,
        values_files: Iterable[Path] = (),
        set_values: Mapping[str, str] = {},
        kube_version: str = KUBE_VERSIONS[-1],
        api_versions: Iterable[str] = (),
    ) -> list[Doc]:
        """``api_versions``: what the cluster serves beyond Kubernetes' own
        (``group/version/Kind``), as ``.Capabilities`` reports it."""
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        args += ["--kube-version", kube_version]
        for api_version in api_versions:
            args += ["--api-versions", api_version]
        for path in values_files:
            args += ["-f", str(path)]
        for key, value in set_values.items():
            args += ["--set", f"{key}={value}"]
        result = self.run(*args)
        if result.returncode != 0:
            raise RenderError(result.stderr.strip())
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def scenario_file(scenario: str) -> Path:
    return CHART / "ci" / f"{scenario}-values.yaml"


def merged_values(scenario: str) -> dict[str, Any]:
    """The chart's values with the scenario's on top (deep merge, as helm does)."""

    def merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in top.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return merge(defaults, yaml.safe_load(scenario_file(scenario).read_text()) or {})


def custom_resource_definition(kind: str) -> Doc:
    """The chart's CRD (``crds/``) of ``kind``."""
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["spec"]["names"]["kind"] == kind:
                found: Doc = doc
                return found
    raise KeyError(f"no CRD of kind {kind} in {CRDS}")


def structural_json_schema(schema: Doc) -> Doc:
    """A CRD's ``openAPIV3Schema`` as a JSON Schema (draft 4, as OpenAPI 3.0's) that also
    refuses what the API server would *prune*: a field the schema does not declare, under
    an object that declares its properties and does not preserve unknown fields."""
    converted = {
        key: value
        for key, value in schema.items()
        if not key.startswith("x-kubernetes-") and key not in ("properties", "items", "anyOf")
    }
    if "properties" in schema:
        converted["properties"] = {
            name: structural_json_schema(sub) for name, sub in schema["properties"].items()
        }
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            converted.setdefault("additionalProperties", False)
    if "items" in schema:
        converted["items"] = structural_json_schema(schema["items"])
    if "anyOf" in schema:
        converted["anyOf"] = [structural_json_schema(sub) for sub in schema["anyOf"]]
    return converted


def custom_resource_validator(kind: str) -> tuple[str, jsonschema.Draft4Validator]:
    """The stored version (``group/version``) of the chart's CRD of ``kind`` and a
    validator of its schema (``structural_json_schema``)."""
    crd = custom_resource_definition(kind)
    [version] = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    api_version = f"{crd['spec']['group']}/{version['name']}"
    schema = structural_json_schema(version["schema"]["openAPIV3Schema"])
    return api_version, jsonschema.Draft4Validator(schema)


def pgbouncer_settings(ini: str) -> configparser.SectionProxy:
    """The ``[pgbouncer]`` section of a pgbouncer.ini. ``%include`` lines (PgBouncer's
    own directive) are left out: their settings live in the included file."""
    parser = configparser.ConfigParser(comment_prefixes=(";",), interpolation=None)
    parser.read_string(
        "\n".join(line for line in ini.splitlines() if not line.startswith("%include"))
    )
    return parser["pgbouncer"]
