"""A budget's outside world in a cluster: its Secrets, its ConfigMaps, Postgres."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient

from services.operator.apply import PoolStore
from services.operator.kube_client import ConfigMapPoolStore, read_secret
from services.operator.pgbouncer_console import AdminCredentials
from services.operator.postgres import PostgresFacts, PostgresTarget, read_facts
from services.operator.reconcile import ConfigurationError
from services.operator.spec import BudgetSpec, PooledConsumer


class KubeBudgetIO:
    """Implements ``reconcile.BudgetIO``; Secrets are read on every reconcile, so a rotated
    password is picked up without a restart."""

    def __init__(
        self, client: AsyncClient, namespace: str, spec: BudgetSpec, body: Mapping[str, Any]
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._spec = spec
        self._body = body
        self._stores: dict[str, ConfigMapPoolStore] = {}

    async def postgres_facts(self) -> PostgresFacts:
        data = await read_secret(self._client, self._namespace, self._spec.postgres.secret_ref.name)
        try:
            target = PostgresTarget.from_secret(data)
        except ValueError as error:
            raise ConfigurationError(str(error)) from error
        return await read_facts(target)

    async def admin_credentials(self, consumer: PooledConsumer) -> AdminCredentials:
        name = consumer.pgbouncer.admin_secret_ref.name
        data = await read_secret(self._client, self._namespace, name)
        try:
            return AdminCredentials.from_secret(data)
        except ValueError as error:
            raise ConfigurationError(f"Secret {name}: {error}") from error

    def pool_store(self, consumer: PooledConsumer) -> PoolStore:
        name = consumer.pgbouncer.config_map
        if name not in self._stores:
            self._stores[name] = ConfigMapPoolStore(self._client, self._namespace, name, self._body)
        return self._stores[name]
