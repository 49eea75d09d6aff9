"""The dev loop's files agree with the chart and the Dockerfile: skaffold builds every
image the chart runs of ours, from a Dockerfile stage that exists, and the kind values
render a valid release."""

from __future__ import annotations

import re
from importlib import metadata

import kubernetes_validate
import yaml

from tests.support.chart import CHART, REPO_ROOT, Helm, custom_resource_validator

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
SKAFFOLD = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())


def test_skaffold_builds_from_existing_dockerfile_stages() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, re.MULTILINE)
    artifacts = {a["image"]: a["docker"].get("target") for a in SKAFFOLD["build"]["artifacts"]}
    assert artifacts == {
        "stampede": None,
        "stampede-pgbouncer": "pgbouncer",
        "stampede-pgbouncer-exporter": "pgbouncer-exporter",
    }
    assert {"pgbouncer", "pgbouncer-exporter"} <= set(stages)
    assert stages[-1] == "runtime", "the app must be the default (last) target"


def test_every_image_stage_runs_as_a_numeric_non_root_user() -> None:
    # Stages others copy from only build (as root); no image of theirs is shipped or run.
    build_stages = set(re.findall(r"--from=(\S+)", DOCKERFILE))
    assert {"build", "pgbouncer-build"} <= build_stages
    for stage in re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[1:]:
        name = stage.split()[2]
        if name in build_stages:
            continue
        users = re.findall(r"^USER (\d+):(\d+)$", stage, re.MULTILINE)
        assert users, name
        assert all(int(uid) > 0 for uid, _ in users), name


def test_skaffold_sets_the_chart_images_it_builds() -> None:
    [release] = SKAFFOLD["deploy"]["helm"]["releases"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in release["setValueTemplates"]:
        node = values
        for part in key.split("."):
            node = node[part]
    assert release["chartPath"] == "charts/stampede"


def test_kind_dev_values_render_valid_objects(helm: Helm) -> None:
    docs = helm.template([REPO_ROOT / "k8s" / "stampede-dev-values.yaml"])
    kinds = {doc["kind"] for doc in docs}
    assert {"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler"} <= kinds
    budget_api, budget_schema = custom_resource_validator("ConnectionBudget")
    for doc in docs:
        if doc["apiVersion"].startswith(("monitoring.coreos.com", "keda.sh")):
            continue
        if doc["apiVersion"] == budget_api:
            budget_schema.validate(doc)
            continue
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    assert "ConnectionBudget" in kinds
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert all(m["metadata"]["labels"]["release"] == "kube-prometheus-stack" for m in monitors)


def test_kind_nodes_support_native_sidecars() -> None:
    cluster = yaml.safe_load((REPO_ROOT / "k8s" / "kind-cluster.yaml").read_text())
    for node in cluster["nodes"]:
        match = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.\d+", node["image"])
        assert match, node["image"]
        assert (int(match[1]), int(match[2])) >= (1, 29)


def _kind_sh_setting(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)", (REPO_ROOT / "k8s" / "kind.sh").read_text(), re.M)
    assert found is not None, f"k8s/kind.sh sets no {name}"
    return found.group(1)


def test_the_kind_add_ons_are_the_versions_the_custom_resources_are_validated_against() -> None:
    """ServiceMonitors, the PrometheusRule and the ScaledObject are validated against
    generated models of one operator release each; the kind cluster installs exactly
    those releases, not whatever is newest."""
    operator_models = metadata.version("cloudcoil-models-prometheus-operator")
    keda_models = metadata.version("cloudcoil-models-keda")
    assert (
        _kind_sh_setting("PROMETHEUS_OPERATOR_VERSION") == "v" + operator_models.rsplit(".", 1)[0]
    )
    assert _kind_sh_setting("KEDA_VERSION") == keda_models.rsplit(".", 1)[0]
    assert re.fullmatch(r"\d+\.\d+\.\d+", _kind_sh_setting("KUBE_PROMETHEUS_STACK_VERSION"))
