"""The operator without Kubernetes (the local stack): one ConnectionBudget from a YAML file,
whose ``local:`` block says what a cluster would (pods, replicas, Secrets), reconciled on
its timer and whenever the file changes; the pool sizes go to a ``pool.ini`` file.

```yaml
apiVersion: stampede.dev/v1alpha1
kind: ConnectionBudget
metadata: {name: local, namespace: local}
spec: {...}                       # as in a cluster; secretRef/configMap names unused
local:
  postgres: {host: 127.0.0.1, port: 25432, database: stampede,
             username: stampede, password: stampede}
  pooled:
    api:
      replicas: 1                 # the Deployment's replicas
      hpaMaxReplicas: 1           # optional
      pods: ["127.0.0.1:26432"]   # each pod's PgBouncer
      admin: {username: stampede, password: stampede}
      poolFile: .stack/pgbouncer/pool.ini
  fixed:
    worker: {replicas: 1}
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from services.operator import pool_file
from services.operator.allocation import Surge
from services.operator.apply import PodEndpoint, PoolStore, StoreError
from services.operator.cycle import next_delay, run_cycle
from services.operator.observation import FixedObservation, Observation, PooledObservation
from services.operator.pgbouncer_console import AdminCredentials
from services.operator.postgres import PostgresFacts, PostgresTarget, read_facts
from services.operator.reconcile import ConfigurationError
from services.operator.spec import BudgetSpec, PooledConsumer
from services.operator.status import Report

log = logging.getLogger("stampede.operator")


class _Local(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class LocalPostgres(_Local):
    host: str
    port: int = 5432
    database: str
    username: str
    password: str
    sslmode: str | None = None


class LocalPooled(_Local):
    replicas: int = Field(ge=0)
    hpa_max_replicas: int | None = Field(None, alias="hpaMaxReplicas")
    pods: list[str]
    admin: dict[str, str]
    pool_file: Path = Field(alias="poolFile")


class LocalFixed(_Local):
    replicas: int = Field(ge=0)


class LocalWorld(_Local):
    postgres: LocalPostgres
    pooled: dict[str, LocalPooled]
    fixed: dict[str, LocalFixed] = {}


class BudgetFile(_Local):
    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    local: LocalWorld

    @classmethod
    def load(cls, path: Path) -> BudgetFile:
        return cls.model_validate(yaml.safe_load(path.read_text()))

    @property
    def key(self) -> str:
        return f"{self.metadata.get('namespace', 'local')}/{self.metadata['name']}"


class FilePoolStore:
    """``pool.ini`` on disk, replaced atomically (PgBouncer may read it at any time)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def read(self) -> int | None:
        return await asyncio.to_thread(self._read)

    async def write(self, pool_size: int) -> None:
        await asyncio.to_thread(self._write, pool_size)

    def _read(self) -> int | None:
        try:
            return pool_file.parse(self._path.read_text())
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StoreError(f"{self._path}: {error}") from error

    def _write(self, pool_size: int) -> None:
        temporary = self._path.with_name(self._path.name + ".tmp")
        try:
            temporary.write_text(pool_file.render(pool_size))
            temporary.chmod(0o644)
            temporary.replace(self._path)
        except OSError as error:
            raise StoreError(f"{self._path}: {error}") from error


class FileBudgetIO:
    """Implements ``reconcile.BudgetIO`` from a budget file's ``local:`` block."""

    def __init__(self, world: LocalWorld) -> None:
        self._world = world

    async def postgres_facts(self) -> PostgresFacts:
        pg = self._world.postgres
        return await read_facts(
            PostgresTarget(pg.host, pg.port, pg.database, pg.username, pg.password, pg.sslmode)
        )

    async def admin_credentials(self, consumer: PooledConsumer) -> AdminCredentials:
        try:
            return AdminCredentials.from_secret(self._local(consumer).admin)
        except ValueError as error:
            raise ConfigurationError(f"local.pooled.{consumer.name}.admin: {error}") from error

    def pool_store(self, consumer: PooledConsumer) -> PoolStore:
        return FilePoolStore(self._local(consumer).pool_file)

    def _local(self, consumer: PooledConsumer) -> LocalPooled:
        try:
            return self._world.pooled[consumer.name]
        except KeyError:
            raise ConfigurationError(f"local.pooled has no entry {consumer.name!r}") from None


def observe_local(spec: BudgetSpec, world: LocalWorld) -> Observation:
    pooled, fixed, missing = [], [], []
    for consumer in spec.pooled:
        local = world.pooled.get(consumer.name)
        if local is None:
            missing.append(f"local.pooled.{consumer.name}")
            continue
        pods = tuple(_pod(consumer, address) for address in local.pods)
        pooled.append(
            PooledObservation(
                spec=consumer,
                replicas=local.replicas,
                desired_replicas=local.replicas,
                hpa_max_replicas=local.hpa_max_replicas,
                surge=Surge.parse(consumer.max_surge),
                pods_present=len(pods),
                ready_pods=pods,
            )
        )
    for fixed_consumer in spec.fixed:
        replicas = (
            world.fixed[fixed_consumer.name].replicas
            if fixed_consumer.name in world.fixed
            else fixed_consumer.replicas
        )
        fixed.append(FixedObservation(fixed_consumer, replicas))
    return Observation(tuple(pooled), tuple(fixed), tuple(missing))


def _pod(consumer: PooledConsumer, address: str) -> PodEndpoint:
    host, _, port = address.rpartition(":")
    return PodEndpoint(address, host or address, int(port) if host else consumer.pgbouncer.port)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


async def reconcile_file(path: Path, previous_status: dict[str, Any]) -> tuple[Report, BudgetSpec]:
    budget = await asyncio.to_thread(BudgetFile.load, path)
    spec = BudgetSpec.parse(budget.spec)
    observation = observe_local(spec, budget.local)
    result = await run_cycle(
        budget.key, spec, observation, FileBudgetIO(budget.local), previous_status, None
    )
    return result, spec


async def run_standalone(
    path: Path,
    retry_interval: float,
    status_file: Path | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Reconcile ``path`` on its timer and when it changes, until ``stop``; the status goes
    to the log (and to ``status_file`` as YAML, for ``make status``-style inspection)."""
    stop = stop or asyncio.Event()
    status: dict[str, Any] = {}
    while not stop.is_set():
        changed_at = await asyncio.to_thread(_mtime, path)
        try:
            result, spec = await reconcile_file(path, status)
        except (ValueError, OSError) as error:  # pydantic's ValidationError is a ValueError
            log.error("budget file %s unusable: %s", path, error)
            delay = retry_interval
        else:
            status = {**status, **result.status}
            for event in result.events:
                log.log(
                    logging.WARNING if event.type == "Warning" else logging.INFO,
                    "%s: %s",
                    event.reason,
                    event.message,
                )
            if status_file is not None:
                text = yaml.safe_dump(status, sort_keys=False)
                await asyncio.to_thread(status_file.write_text, text)
            delay = next_delay(result, spec, retry_interval)
        await _sleep_until_changed(path, changed_at, delay, stop)


async def _sleep_until_changed(
    path: Path, mtime: float | None, delay: float, stop: asyncio.Event
) -> None:
    """Sleep ``delay`` seconds, less when the file changes or ``stop`` is set."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while loop.time() < deadline and not stop.is_set():
        if await asyncio.to_thread(_mtime, path) != mtime:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(0.5, deadline - loop.time()))
