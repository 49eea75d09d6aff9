"""One reconcile of a budget: read Postgres, compute the allocation, apply it.

Independent of where the observation and the stores come from (the Kubernetes API or the
local stack's budget file): they arrive through :class:`BudgetIO`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from services.operator.allocation import Allocation, allocate
from services.operator.apply import (
    ApplyOutcome,
    PodEndpoint,
    PoolStore,
    Push,
    apply_pool_size,
)
from services.operator.observation import Observation
from services.operator.pgbouncer_console import AdminCredentials, push_pool_size
from services.operator.postgres import PostgresFacts, PostgresUnreachableError
from services.operator.spec import BudgetSpec, PooledConsumer


class ConfigurationError(Exception):
    """Something the spec names cannot be used (a missing Secret or key); no retry helps
    until someone fixes it, but the periodic reconcile notices when they do."""


class BudgetIO(Protocol):
    """The outside world of one budget."""

    async def postgres_facts(self) -> PostgresFacts:
        """Raise PostgresUnreachableError or ConfigurationError."""
        ...

    async def admin_credentials(self, consumer: PooledConsumer) -> AdminCredentials:
        """Raise ConfigurationError."""
        ...

    def pool_store(self, consumer: PooledConsumer) -> PoolStore: ...


@dataclass(frozen=True)
class Outcome:
    """Everything the status, the Events and the metrics are made from."""

    observation: Observation
    facts: PostgresFacts | None = None
    postgres_error: str | None = None
    configuration_error: str | None = None
    allocation: Allocation | None = None
    applied: Mapping[str, ApplyOutcome] = field(default_factory=dict)

    @property
    def in_use(self) -> int | None:
        if self.facts is None:
            return None
        pooled, fixed = self.observation.pooled, self.observation.fixed
        roles = {c.spec.role for c in pooled} | {c.spec.role for c in fixed}
        named = {role for role in roles if role}
        return self.facts.in_use(named or None)

    def in_use_by(self, role: str | None) -> int | None:
        if self.facts is None or not role:
            return None
        return self.facts.connections_by_role.get(role, 0)


async def reconcile(spec: BudgetSpec, observation: Observation, io: BudgetIO) -> Outcome:
    """Compute and apply; with ``maxConnections: auto`` nothing changes while Postgres is
    unreachable (an explicit integer needs no Postgres to be applied safely)."""
    facts: PostgresFacts | None = None
    postgres_error: str | None = None
    try:
        facts = await io.postgres_facts()
    except PostgresUnreachableError as error:
        postgres_error = str(error)
    except ConfigurationError as error:
        return Outcome(observation, configuration_error=str(error))
    if observation.missing:
        return Outcome(observation, facts, postgres_error)
    if isinstance(spec.postgres.max_connections, int):
        capacity = spec.postgres.max_connections
    elif facts is not None:
        capacity = facts.capacity
    else:
        return Outcome(observation, facts, postgres_error)
    allocation = allocate(
        capacity,
        spec.reserve,
        [pooled.demand() for pooled in observation.pooled],
        [fixed.demand() for fixed in observation.fixed],
    )
    applied: dict[str, ApplyOutcome] = {}
    for pooled in observation.pooled:
        try:
            admin = await io.admin_credentials(pooled.spec)
        except ConfigurationError as error:
            return Outcome(observation, facts, postgres_error, str(error), allocation, applied)
        applied[pooled.spec.name] = await apply_pool_size(
            allocation.share(pooled.spec.name).pool_size,
            list(pooled.ready_pods),
            io.pool_store(pooled.spec),
            _pusher(admin),
        )
    return Outcome(observation, facts, postgres_error, None, allocation, applied)


def _pusher(admin: AdminCredentials) -> Push:
    async def push(pod: PodEndpoint, pool_size: int) -> None:
        await push_pool_size(pod.host, pod.port, admin, pool_size)

    return push
