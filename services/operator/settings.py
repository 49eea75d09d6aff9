"""The operator process's settings.

The operator runs from the same image but reads none of the api's or worker's settings,
so it has its own small class; the variable names are fixed by the chart
(docs/operator.md): ``STAMPEDE_OPERATOR_NAMESPACE``, ``..._METRICS_PORT``,
``..._HEALTH_PORT``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STAMPEDE_OPERATOR_", extra="ignore")

    namespace: str | None = Field(
        None,
        description="The namespace watched (the pod's own, from the downward API). "
        "Required in a cluster.",
    )
    budget_name: str | None = Field(
        None,
        description="Only the ConnectionBudget of this name (the chart sets its release's), "
        "so two releases in one namespace never size each other's pools. Unset: every "
        "ConnectionBudget in the namespace.",
    )
    metrics_port: int = Field(9808, ge=1, le=65535, description="Prometheus `/metrics`.")
    metrics_addr: str = "0.0.0.0"
    health_port: int = Field(8080, ge=1, le=65535, description="Liveness `GET /healthz`.")
    health_addr: str = "0.0.0.0"
    retry_interval_s: float = Field(
        2.0, gt=0, description="Reconcile again this soon while something failed."
    )
