"""Monitoring is on by default where the cluster can take it.

A user who runs `helm install` on a cluster with kube-prometheus-stack gets the
ServiceMonitors, the PrometheusRule and the dashboards without flags; on a cluster
without the prometheus-operator CRDs the same install must not fail on unknown kinds.
"""

from __future__ import annotations

from tests.support.chart import MONITORING_APIS, Helm

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _kinds(helm: Helm, *, api_versions: tuple[str, ...], **values: str) -> set[str]:
    return {doc["kind"] for doc in helm.template(set_values=values, api_versions=api_versions)}


def test_a_cluster_with_the_operator_gets_monitors_rules_and_dashboards(helm: Helm) -> None:
    docs = helm.template(api_versions=MONITORING_APIS)
    kinds = {doc["kind"] for doc in docs}
    assert kinds >= OPERATOR_KINDS
    dashboards = [
        doc
        for doc in docs
        if doc["kind"] == "ConfigMap"
        and doc["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == 5


def test_a_cluster_without_the_operator_gets_no_operator_objects(helm: Helm) -> None:
    kinds = _kinds(helm, api_versions=())
    assert not OPERATOR_KINDS & kinds
    assert "ConfigMap" in kinds


def test_true_and_false_force_either_way(helm: Helm) -> None:
    forced_on = {
        "metrics.serviceMonitor.enabled": "true",
        "metrics.prometheusRule.enabled": "true",
    }
    forced_off = {
        "metrics.serviceMonitor.enabled": "false",
        "metrics.prometheusRule.enabled": "false",
    }
    assert _kinds(helm, api_versions=(), **forced_on) >= OPERATOR_KINDS
    assert not OPERATOR_KINDS & _kinds(helm, api_versions=MONITORING_APIS, **forced_off)
