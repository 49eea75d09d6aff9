"""The connection budget guard: ``helm template`` refuses a release whose autoscalers
could, at their maxima, open more Postgres connections than the database allows — with
static pools (the operator off) every api pod at its full pool; with the ConnectionBudget
operator every api pod of a rollout at full scale at its *minimum* pool."""

from __future__ import annotations

import pytest

from tests.support.chart import Helm, RenderError, scenario_file

# The operator off: static pools, sized for the HPA's maximum.
OFF = {"operator.enabled": "false"}
# Defaults: 10 api x 10 pool + 5 workers x 4 + 1 relay x 2 + reserve 10.
DEFAULT_NEED = 10 * 10 + 5 * 4 + 1 * 2 + 10


def test_defaults_fit_exactly_at_the_limit(helm: Helm) -> None:
    helm.template(set_values={**OFF, "postgresql.maxConnections": str(DEFAULT_NEED)})


def test_one_connection_short_fails_with_the_arithmetic(helm: Helm) -> None:
    with pytest.raises(RenderError) as failure:
        helm.template(set_values={**OFF, "postgresql.maxConnections": str(DEFAULT_NEED - 1)})
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
        helm.template(set_values={**OFF, **values, "postgresql.maxConnections": "180"})


def test_keda_maximum_counts_instead_of_the_hpas(helm: Helm) -> None:
    keda = {**OFF, "worker.keda.enabled": "true", "postgresql.maxConnections": str(DEFAULT_NEED)}
    helm.template(set_values={**keda, "worker.keda.maxReplicaCount": "5"})
    with pytest.raises(RenderError, match="6 max replicas x 4"):
        helm.template(set_values={**keda, "worker.keda.maxReplicaCount": "6"})


def test_fixed_replicas_count_when_autoscaling_is_off(helm: Helm) -> None:
    fixed = {**OFF, "api.autoscaling.enabled": "false", "postgresql.maxConnections": "100"}
    helm.template(set_values={**fixed, "api.replicas": "6"})  # 60 + 20 + 2 + 10
    with pytest.raises(RenderError, match="connection budget exceeded"):
        helm.template(set_values={**fixed, "api.replicas": "7"})


def test_external_database_budget(helm: Helm) -> None:
    external = [scenario_file("external-db")]
    helm.template(external, OFF)  # 100 + 20 + 2 + 10 <= 300
    with pytest.raises(RenderError, match=r"raise externalDatabase\.maxConnections"):
        helm.template(external, {**OFF, "externalDatabase.maxConnections": "120"})


def test_the_guard_can_be_switched_off(helm: Helm) -> None:
    for operator in ("false", "true"):
        helm.template(
            set_values={
                "operator.enabled": operator,
                "postgresql.maxConnections": "10",
                "connectionBudget.enabled": "false",
            }
        )


# ---- with the operator (the default) ----------------------------------------------------

# Defaults: (10 api max + 3 surge, 25% rounded up) x 2 minimum pool + 5 workers x 4
# + 1 relay x 2 + 1 migrations + reserve 10.
OPERATOR_NEED = (10 + 3) * 2 + 5 * 4 + 1 * 2 + 1 + 10
# With the in-chart Postgres the budget is `auto`: max_connections less Postgres' 3
# superuser slots, as the operator reads it.
IN_CHART_MAX = OPERATOR_NEED + 3


def test_with_the_operator_the_minimum_pools_fit_exactly_at_the_limit(helm: Helm) -> None:
    helm.template(set_values={"postgresql.maxConnections": str(IN_CHART_MAX)})


def test_with_the_operator_one_connection_short_fails_with_the_arithmetic(helm: Helm) -> None:
    with pytest.raises(RenderError) as failure:
        helm.template(set_values={"postgresql.maxConnections": str(IN_CHART_MAX - 1)})
    message = str(failure.value)
    assert "connection budget exceeded" in message
    assert f"{OPERATOR_NEED} Postgres connections needed at full scale with the smallest" in message
    assert (
        f"allows {OPERATOR_NEED - 1} (postgresql.maxConnections {IN_CHART_MAX - 1} less 3"
        " superuser slots)" in message
    )
    assert "(10 max replicas + 3 rollout surge) x 2 minimum PgBouncer pool size" in message
    assert "migrations: 1 (migrations.dbConnections)" in message
    assert "postgresql.maxConnections" in message


def test_with_the_operator_the_static_pool_no_longer_counts(helm: Helm) -> None:
    """The HPA's maximum at the static pool (10 x 10 + 32 = 132) would not fit; the
    operator shrinks the pools as the api grows, so only the minimum must."""
    budget = {"postgresql.maxConnections": str(IN_CHART_MAX)}
    helm.template(set_values={**budget, "pgbouncer.defaultPoolSize": "50"})
    helm.template(set_values={**budget, "operator.api.maxPoolSize": "100"})
    with pytest.raises(RenderError, match="connection budget exceeded"):
        helm.template(set_values={**budget, **OFF})


@pytest.mark.parametrize(
    "values",
    [
        {"api.autoscaling.maxReplicas": "11"},  # (11 + 3) x 2 = 28
        {"operator.api.minPoolSize": "3"},  # 13 x 3 = 39
        {"operator.api.maxSurge": "4"},  # (10 + 4) x 2 = 28
        {"operator.api.maxSurge": "31%"},  # 3.1 pods round up to 4
        {"worker.autoscaling.maxReplicas": "6"},  # 24 workers
        {"migrations.dbConnections": "2"},
        {"connectionBudget.reserve": "11"},
    ],
)
def test_with_the_operator_any_term_can_break_the_budget(
    helm: Helm, values: dict[str, str]
) -> None:
    budget = {"postgresql.maxConnections": str(IN_CHART_MAX)}
    with pytest.raises(RenderError, match="connection budget exceeded"):
        helm.template(set_values={**budget, **values})


def test_with_the_operator_a_percentage_surge_rounds_up_as_kubernetes_does(helm: Helm) -> None:
    budget = {"postgresql.maxConnections": str(IN_CHART_MAX)}
    helm.template(set_values={**budget, "operator.api.maxSurge": "30%"})  # exactly 3


def test_with_the_operator_no_surge_frees_the_surge_pools(helm: Helm) -> None:
    helm.template(
        set_values={
            "postgresql.maxConnections": str(IN_CHART_MAX - 3 * 2),
            "operator.api.maxSurge": "0",
        }
    )


def test_with_the_operator_its_own_budget_wins(helm: Helm) -> None:
    """operator.maxConnections, a number, is the budget the ConnectionBudget carries and
    the one the guard checks."""
    helm.template(set_values={"operator.maxConnections": str(OPERATOR_NEED)})
    with pytest.raises(RenderError, match=r"raise operator\.maxConnections"):
        helm.template(set_values={"operator.maxConnections": str(OPERATOR_NEED - 1)})


def test_with_the_operator_the_external_database_budget(helm: Helm) -> None:
    external = [scenario_file("external-db")]
    helm.template(external, {"externalDatabase.maxConnections": str(OPERATOR_NEED)})
    with pytest.raises(RenderError, match=r"raise externalDatabase\.maxConnections"):
        helm.template(external, {"externalDatabase.maxConnections": str(OPERATOR_NEED - 1)})


def test_a_minimum_pool_above_the_maximum_is_refused(helm: Helm) -> None:
    with pytest.raises(RenderError, match=r"minPoolSize \(21\) is above"):
        helm.template(set_values={"operator.api.minPoolSize": "21"})
