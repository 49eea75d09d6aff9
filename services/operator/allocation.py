"""The connection budget, computed: a pure function from what runs to what each pod may hold.

Inputs are plain numbers read elsewhere (Postgres, the Kubernetes API, a budget file);
nothing here does I/O, so the rules are proven by property-based tests alone.

The model (docs/operator.md has a worked example)::

    budget    = capacity - reserve - sum(fixed.pods * fixed.connections_per_pod)
    pods_i    = max(planned replicas_i + surge_i(planned replicas_i), pods present_i, 1)
    allocated = sum(pods_i * pool_i)                  with min_i <= pool_i <= max_i

Pools grow from their minimums one connection per pod at a time, always to the consumer
whose ``pool / weight`` is lowest, while the budget has room. When even the minimums do
not fit, every pool stays at its minimum and the allocation says it is infeasible: a pool
is never pushed below its minimum, and exceeding the budget is never silent.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Surge:
    """A rolling update's ``maxSurge``: an absolute pod count or a percentage of replicas."""

    pods: int = 0
    percent: int | None = None

    def at(self, replicas: int) -> int:
        """Extra pods during a rollout of ``replicas`` pods (Kubernetes rounds percentages up)."""
        if self.percent is not None:
            return math.ceil(replicas * self.percent / 100)
        return self.pods

    @classmethod
    def parse(cls, value: int | str | None) -> Surge:
        """``3``, ``"3"`` or ``"25%"``, as in a Deployment's ``rollingUpdate.maxSurge``."""
        if value is None:
            return cls()
        if isinstance(value, str) and value.strip().endswith("%"):
            percent = int(value.strip()[:-1])
            if percent < 0:
                raise ValueError(f"maxSurge must not be negative: {value!r}")
            return cls(percent=percent)
        pods = int(value)
        if pods < 0:
            raise ValueError(f"maxSurge must not be negative: {value!r}")
        return cls(pods=pods)


@dataclass(frozen=True)
class FixedDemand:
    """A consumer holding a fixed number of connections per pod (worker, relay, migrations)."""

    name: str
    pods: int
    connections_per_pod: int

    @property
    def connections(self) -> int:
        return self.pods * self.connections_per_pod


@dataclass(frozen=True)
class PooledDemand:
    """A Deployment whose pods each run a PgBouncer sidecar with a resizable pool."""

    name: str
    replicas: int  # planned: max(the Deployment's replicas, the HPA's desired replicas)
    min_pool: int
    max_pool: int
    weight: int = 1
    surge: Surge = Surge()
    pods_present: int = 0  # pods that exist now (a rollout may hold more than planned)

    def __post_init__(self) -> None:
        if not 1 <= self.min_pool <= self.max_pool:
            raise ValueError(f"{self.name}: need 1 <= minPoolSize <= maxPoolSize")
        if self.weight < 1 or self.replicas < 0 or self.pods_present < 0:
            raise ValueError(f"{self.name}: weight >= 1 and non-negative replicas required")

    def pods_at(self, replicas: int) -> int:
        """Pods that may hold connections at once when ``replicas`` are planned."""
        return max(replicas + self.surge.at(replicas), 1)

    @property
    def pods(self) -> int:
        """Pods sized for: the plan plus its surge, or more if more exist right now. At
        least one, so a consumer scaled to zero does not get an unbounded pool for the
        first pod that comes back."""
        return max(self.pods_at(self.replicas), self.pods_present)


@dataclass(frozen=True)
class Share:
    """One pooled consumer's outcome."""

    name: str
    pods: int
    pool_size: int
    max_replicas_allowed: int

    @property
    def connections(self) -> int:
        return self.pods * self.pool_size


@dataclass(frozen=True)
class Allocation:
    """The outcome for a whole budget."""

    capacity: int
    budget: int
    fixed: int
    shares: tuple[Share, ...]

    @property
    def allocated(self) -> int:
        """Connections the pooled consumers may open (the fixed ones are already deducted)."""
        return sum(share.connections for share in self.shares)

    @property
    def feasible(self) -> bool:
        """Whether every pool at its size fits the budget."""
        return self.allocated <= self.budget

    def share(self, name: str) -> Share:
        return next(share for share in self.shares if share.name == name)


def allocate(
    capacity: int,
    reserve: int,
    pooled: Sequence[PooledDemand],
    fixed: Sequence[FixedDemand] = (),
) -> Allocation:
    """Split ``capacity - reserve - fixed`` among the pooled consumers.

    ``capacity`` is what Postgres admits to non-superusers (``max_connections`` minus the
    reserved slots, or the spec's integer).
    """
    names = [demand.name for demand in pooled]
    if len(set(names)) != len(names):
        raise ValueError(f"consumer names must be unique: {names}")
    fixed_total = sum(demand.connections for demand in fixed)
    budget = capacity - reserve - fixed_total
    pools = {demand.name: demand.min_pool for demand in pooled}
    remaining = budget - sum(demand.pods * demand.min_pool for demand in pooled)
    if remaining > 0:
        _grow(pooled, pools, remaining)
    shares = tuple(
        Share(
            name=demand.name,
            pods=demand.pods,
            pool_size=pools[demand.name],
            max_replicas_allowed=_max_replicas_allowed(demand, pooled, budget),
        )
        for demand in pooled
    )
    return Allocation(capacity=capacity, budget=budget, fixed=fixed_total, shares=shares)


def _grow(pooled: Sequence[PooledDemand], pools: dict[str, int], remaining: int) -> None:
    """Add one connection per pod at a time to the consumer with the lowest pool/weight
    (compared exactly; ties go by name, so the result never depends on the input order)."""
    by_name = {demand.name: demand for demand in pooled}
    heap = [(Fraction(pools[d.name], d.weight), d.name) for d in pooled if d.min_pool < d.max_pool]
    heapq.heapify(heap)
    while heap:
        _, name = heapq.heappop(heap)
        demand = by_name[name]
        # The budget only shrinks, so a consumer that cannot grow now never will.
        if demand.pods > remaining:
            continue
        pools[name] += 1
        remaining -= demand.pods
        if pools[name] < demand.max_pool:
            heapq.heappush(heap, (Fraction(pools[name], demand.weight), name))


def _max_replicas_allowed(demand: PooledDemand, pooled: Sequence[PooledDemand], budget: int) -> int:
    """The most replicas ``demand`` may plan (with its surge) while every consumer keeps at
    least its minimum pool and the others keep their present pod counts."""
    others = sum(d.pods * d.min_pool for d in pooled if d.name != demand.name)
    room = budget - others

    def fits(replicas: int) -> bool:
        return demand.pods_at(replicas) * demand.min_pool <= room

    if not fits(0):
        return 0
    low, high = 0, max(room, 1)  # pods_at(r) >= r, so r <= room
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
