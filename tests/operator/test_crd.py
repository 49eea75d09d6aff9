"""The CRD is a valid apiextensions.k8s.io/v1 object, structural, and its own schema accepts
what users write and rejects what the operator could not read."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.operator.spec import GROUP, KIND, PLURAL, BudgetSpec
from tests.support.chart import KUBE_VERSIONS
from tests.support.crd import crd, schema, validate

EXAMPLE = Path(__file__).parent / "examples" / "connectionbudget.yaml"


def example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return doc


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_the_crd_is_a_valid_apiextensions_v1_object(kube_version: str) -> None:
    kubernetes_validate.validate(crd(), kube_version, strict=True)


def test_the_crd_names_what_the_operator_and_the_chart_rely_on() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (GROUP, "Namespaced", KIND)
    assert spec["names"]["shortNames"] == ["cb"]
    (version,) = spec["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns == ["Budget", "Allocated", "In use", "Ready", "Age"]


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")


def test_the_schema_is_structural_every_field_has_a_type() -> None:
    untyped = [
        path
        for path, node in _nodes(schema())
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert not untyped
    # Within anyOf only the int-or-string pattern is allowed.
    for path, node in _nodes(schema()):
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path


def test_the_example_validates_against_the_crd_and_the_operator_reads_it() -> None:
    validate(example())
    spec = BudgetSpec.parse(example()["spec"])
    assert spec.pooled[0].pgbouncer.config_map == "stampede-api-pool"
    assert spec.postgres.max_connections == "auto"


def test_a_status_as_the_operator_writes_it_validates() -> None:
    obj = example()
    obj["status"] = {
        "observedGeneration": 3,
        "capacity": 97,
        "budget": 77,
        "allocated": 75,
        "inUse": 12,
        "lastReconcileTime": "2026-12-01T20:00:00+00:00",
        "consumers": [
            {
                "name": "api",
                "kind": "pooled",
                "replicas": 4,
                "desiredReplicas": 4,
                "surge": 1,
                "connections": 75,
                "poolSizePerPod": 15,
                "podsApplied": 4,
                "podsTotal": 4,
                "maxReplicasAllowed": 30,
                "inUse": 12,
            }
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Applied",
                "message": "every pod applied",
                "lastTransitionTime": "2026-12-01T20:00:00+00:00",
            }
        ],
    }
    validate(obj)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("postgres", "maxConnections"), "lots"),
        (("postgres", "maxConnections"), 0),
        (("reserve",), -1),
        (("pooled",), []),
        (("pooled", 0, "minPoolSize"), 0),
        (("pooled", 0, "maxSurge"), "a quarter"),
        (("pooled", 0, "pgbouncer", "port"), 70000),
        (("fixed", 0, "connectionsPerPod"), "four"),
    ],
)
def test_the_schema_rejects_what_the_operator_could_not_read(
    path: tuple[str | int, ...], value: object
) -> None:
    obj = copy.deepcopy(example())
    node: Any = obj["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(obj)
    with pytest.raises(ValueError, match="validation error"):
        BudgetSpec.parse(obj["spec"])


def test_a_spec_missing_a_required_field_is_rejected_by_both() -> None:
    obj = copy.deepcopy(example())
    del obj["spec"]["pooled"][0]["pgbouncer"]["configMap"]
    with pytest.raises(jsonschema.ValidationError):
        validate(obj)
    with pytest.raises(ValueError, match="configMap"):
        BudgetSpec.parse(obj["spec"])
