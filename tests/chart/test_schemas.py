"""The chart lints, renders for every scenario and Kubernetes version, and every document
is valid: built-in kinds against Kubernetes' own (strict) schemas, custom resources
against the operators' generated models, and the chart's own ConnectionBudget against its
CRD's schema (``crds/``)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring
from pydantic import BaseModel

from tests.support.chart import (
    KUBE_VERSIONS,
    MONITORING_APIS,
    SCENARIOS,
    Doc,
    Helm,
    Rendered,
    custom_resource_validator,
    scenario_file,
)

CUSTOM_RESOURCES: dict[tuple[str, str], type[BaseModel]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
}
# The chart's own, validated against the CRD it ships.
OWN_RESOURCES = {("stampede.dev/v1alpha1", "ConnectionBudget")}


@pytest.mark.parametrize("name", SCENARIOS)
def test_lint_strict(helm: Helm, name: str) -> None:
    result = helm.run(
        "lint", "--strict", str(scenario_file(name).parents[1]), "-f", str(scenario_file(name))
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_scenario_renders_objects(rendered: dict[str, Rendered]) -> None:
    assert set(rendered) == {"default", "external-db", "keda", "minimal", "ha"}
    for scenario in rendered.values():
        assert scenario.kinds("Deployment"), scenario.scenario


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_builtin_kinds_match_kubernetes_schemas(
    helm: Helm, rendered: dict[str, Rendered], kube_version: str
) -> None:
    """Strict schemas: an unknown or misplaced field is an error, not silently dropped."""
    checked = 0
    for scenario in rendered.values():
        # Render for this version too: templates may consult .Capabilities.KubeVersion.
        docs = helm.template(
            [scenario_file(scenario.scenario)],
            kube_version=kube_version,
            api_versions=MONITORING_APIS,
        )
        assert [d["kind"] for d in docs] == [d["kind"] for d in scenario.docs]
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES.keys() | OWN_RESOURCES:
                continue
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{scenario.scenario}: {doc['kind']}/{doc['metadata']['name']}: {error}"
                )
            checked += 1
    assert checked > 50


def test_custom_resources_match_their_crds(rendered: dict[str, Rendered]) -> None:
    """Validated, and nothing dropped: an unknown field would vanish in the round trip."""
    seen: set[str] = set()
    for scenario in rendered.values():
        for doc in scenario.docs:
            model = CUSTOM_RESOURCES.get((doc["apiVersion"], doc["kind"]))
            if model is None:
                continue
            parsed = model.model_validate(doc)
            back: dict[str, Any] = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
            assert back == doc, f"{scenario.scenario}: {doc['kind']} has fields its CRD lacks"
            seen.add(doc["kind"])
    assert seen == {kind for _, kind in CUSTOM_RESOURCES}


def test_custom_resource_validation_rejects_a_broken_one() -> None:
    """The CR check is not vacuous: a malformed interval and an unknown field are caught."""
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "thirty"}]},
    }
    with pytest.raises(ValueError, match="interval"):
        monitoring.ServiceMonitor.model_validate(monitor)
    monitor["spec"] = {"selector": {}, "endpoints": [{"port": "metrics", "intervall": "30s"}]}
    back = monitoring.ServiceMonitor.model_validate(monitor).model_dump(
        mode="json", by_alias=True, exclude_unset=True
    )
    assert back != monitor


def test_schema_rejects_unknown_values(helm: Helm) -> None:
    result = helm.run(
        "template", "x", str(scenario_file("default").parents[1]), "--set", "api.wokers=4"
    )
    assert result.returncode != 0
    assert "wokers" in result.stderr


def test_schema_keeps_the_broker_from_evicting(helm: Helm) -> None:
    chart = str(scenario_file("default").parents[1])
    result = helm.run("template", "x", chart, "--set", "broker.maxmemoryPolicy=allkeys-lru")
    assert result.returncode != 0
    assert "noeviction" in result.stderr


def test_connection_budget_matches_its_crd(rendered: dict[str, Rendered]) -> None:
    """What the API server would accept and keep: valid, and no field it would prune."""
    api_version, validator = custom_resource_validator("ConnectionBudget")
    checked = 0
    for scenario in rendered.values():
        for doc in scenario.kinds("ConnectionBudget"):
            assert doc["apiVersion"] == api_version
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
            assert not errors, f"{scenario.scenario}: {errors}"
            checked += 1
    assert checked == sum(s.values["operator"]["enabled"] for s in rendered.values()) >= 4


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "pooled", 0, "minPoolSize"), 0),
        (("spec", "pooled", 0, "maxSurge"), "a quarter"),
        (("spec", "postgres", "maxConnections"), "all"),
        (("spec", "pooled", 0, "pgbouncer", "configmap"), "typo"),  # would be pruned
        (("spec", "reserv"), 10),  # would be pruned
    ],
)
def test_the_crd_check_catches_a_broken_budget(
    rendered: dict[str, Rendered], path: tuple[str | int, ...], value: object
) -> None:
    _, validator = custom_resource_validator("ConnectionBudget")
    [doc] = rendered["default"].kinds("ConnectionBudget")
    broken: Doc = yaml_copy(doc)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(validator.iter_errors(broken))


def yaml_copy(doc: Doc) -> Doc:
    copied: Doc = yaml.safe_load(yaml.safe_dump(doc))
    return copied


def test_the_crd_ships_in_crds_and_helm_installs_it_first(helm: Helm) -> None:
    """``crds/``: Helm creates the CRD before it maps the templates' kinds, so the
    release's own ConnectionBudget can be part of the same install; templates never
    carry it (a second copy would fight Helm's)."""
    assert not [d for d in helm.template() if d["kind"] == "CustomResourceDefinition"]
    result = helm.run("template", "x", str(scenario_file("default").parents[1]), "--include-crds")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    [crd] = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert crd["metadata"]["name"] == "connectionbudgets.stampede.dev"
    assert crd["spec"]["names"]["shortNames"] == ["cb"]
    assert crd["spec"]["scope"] == "Namespaced"
    kinds = [d["kind"] for d in docs]
    assert kinds.index("CustomResourceDefinition") < kinds.index("ConnectionBudget")
