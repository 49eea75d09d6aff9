"""The connection budget guard: ``helm template`` refuses a release whose autoscalers
could, at their maxima, open more Postgres connections than the database allows."""

from __future__ import annotations

import pytest

from tests.support.chart import Helm, RenderError, scenario_file

# Defaults: 10 api x 10 pool + 5 workers x 4 + 1 relay x 2 + reserve 10.
DEFAULT_NEED = 10 * 10 + 5 * 4 + 1 * 2 + 10


def test_defaults_fit_exactly_at_the_limit(helm: Helm) -> None:
    helm.template(set_values={"postgresql.maxConnections": str(DEFAULT_NEED)})


def test_one_connection_short_fails_with_the_arithmetic(helm: Helm) -> None:
    with pytest.raises(RenderError) as failure:
        helm.template(set_values={"postgresql.maxConnections": str(DEFAULT_NEED - 1)})
    message = str(failure.value)
    assert "connection budget exceeded" in message
    assert f"{DEFAULT_NEED} Postgres connections needed" in message
    assert "10 max replicas x 10 PgBouncer pool size" in message
    assert "postgresql.maxConnections" in message


@pytest.mark.parametrize(
    "values",
    [
        {"api.autoscaling.maxReplicas": "20"},  # 200 + 32 > 180
        {"pgbouncer.defaultPoolSize": "19"},  # 190 + 32 > 180
        {"worker.autoscaling.maxReplicas": "20"},  # 100 + 80 + 12 > 180
        {"connectionBudget.reserve": "79"},  # 122 + 79 > 180
    ],
)
def test_any_term_can_break_the_budget(helm: Helm, values: dict[str, str]) -> None:
    with pytest.raises(RenderError, match="connection budget exceeded"):
        helm.template(set_values={**values, "postgresql.maxConnections": "180"})


def test_keda_maximum_counts_instead_of_the_hpas(helm: Helm) -> None:
    keda = {"worker.keda.enabled": "true", "postgresql.maxConnections": str(DEFAULT_NEED)}
    helm.template(set_values={**keda, "worker.keda.maxReplicaCount": "5"})
    with pytest.raises(RenderError, match="6 max replicas x 4"):
        helm.template(set_values={**keda, "worker.keda.maxReplicaCount": "6"})


def test_fixed_replicas_count_when_autoscaling_is_off(helm: Helm) -> None:
    fixed = {"api.autoscaling.enabled": "false", "postgresql.maxConnections": "100"}
    helm.template(set_values={**fixed, "api.replicas": "6"})  # 60 + 20 + 2 + 10
    with pytest.raises(RenderError, match="connection budget exceeded"):
        helm.template(set_values={**fixed, "api.replicas": "7"})


def test_external_database_budget(helm: Helm) -> None:
    external = [scenario_file("external-db")]
    helm.template(external)  # 100 + 20 + 2 + 10 <= 300
    with pytest.raises(RenderError, match=r"raise externalDatabase\.maxConnections"):
        helm.template(external, {"externalDatabase.maxConnections": "120"})


def test_the_guard_can_be_switched_off(helm: Helm) -> None:
    helm.template(
        set_values={"postgresql.maxConnections": "10", "connectionBudget.enabled": "false"}
    )
