"""The ``ConnectionBudget`` spec as the operator reads it (the CRD's schema declares the same
fields: charts/stampede/crds/connectionbudgets.stampede.dev.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.operator.allocation import Surge

GROUP = "stampede.dev"
VERSION = "v1alpha1"
PLURAL = "connectionbudgets"
KIND = "ConnectionBudget"
POOL_FILE_KEY = "pool.ini"


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class SecretRef(_Spec):
    name: str = Field(min_length=1)


class PostgresSpec(_Spec):
    """How to reach Postgres: a Secret with host, port, database, username, password."""

    secret_ref: SecretRef = Field(alias="secretRef")
    # "auto": SHOW max_connections minus the slots reserved for superusers.
    max_connections: Literal["auto"] | int = Field("auto", alias="maxConnections")

    @model_validator(mode="after")
    def _positive(self) -> PostgresSpec:
        if isinstance(self.max_connections, int) and self.max_connections < 1:
            raise ValueError("maxConnections must be 'auto' or a positive integer")
        return self


class PgBouncerSpec(_Spec):
    port: int = Field(6432, ge=1, le=65535)
    admin_secret_ref: SecretRef = Field(alias="adminSecretRef")
    config_map: str = Field(alias="configMap", min_length=1)


class PooledConsumer(_Spec):
    """A Deployment whose pods carry a PgBouncer sidecar."""

    name: str = Field(min_length=1)
    deployment: str = Field(min_length=1)
    horizontal_pod_autoscaler: str | None = Field(None, alias="horizontalPodAutoscaler")
    min_pool_size: int = Field(alias="minPoolSize", ge=1)
    max_pool_size: int = Field(alias="maxPoolSize", ge=1)
    weight: int = Field(1, ge=1)
    max_surge: int | str | None = Field(None, alias="maxSurge")
    role: str | None = None
    pgbouncer: PgBouncerSpec

    @field_validator("max_surge")
    @classmethod
    def _surge_is_a_count_or_a_percentage(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, str) and not value.rstrip("%").isdigit():
            raise ValueError(f"maxSurge must be a count or a percentage like 25%: {value!r}")
        Surge.parse(value)
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> PooledConsumer:
        if self.min_pool_size > self.max_pool_size:
            raise ValueError(f"{self.name}: minPoolSize exceeds maxPoolSize")
        return self


class FixedConsumer(_Spec):
    """A consumer with a fixed number of connections per pod."""

    name: str = Field(min_length=1)
    deployment: str | None = None
    horizontal_pod_autoscaler: str | None = Field(None, alias="horizontalPodAutoscaler")
    replicas: int = Field(1, ge=0)
    connections_per_pod: int = Field(alias="connectionsPerPod", ge=0)
    role: str | None = None


class BudgetSpec(_Spec):
    postgres: PostgresSpec
    reserve: int = Field(0, ge=0)
    pooled: list[PooledConsumer] = Field(min_length=1)
    fixed: list[FixedConsumer] = []
    # Reconcile at least this often even when nothing changes (drift, in-use figures).
    interval_seconds: float = Field(30.0, alias="intervalSeconds", gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> BudgetSpec:
        names = [c.name for c in self.pooled] + [c.name for c in self.fixed]
        if len(set(names)) != len(names):
            raise ValueError(f"consumer names must be unique: {names}")
        return self

    @classmethod
    def parse(cls, spec: dict[str, Any] | Any) -> BudgetSpec:
        """Validate a CR's ``spec`` (a dict or kopf's mapping view)."""
        return cls.model_validate(dict(spec))
