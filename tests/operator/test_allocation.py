"""The budget computation: properties over any replica/surge/weight vector, and examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.operator.allocation import (
    FixedDemand,
    PooledDemand,
    Surge,
    allocate,
)


@st.composite
def pooled_demands(draw: st.DrawFn) -> list[PooledDemand]:
    count = draw(st.integers(1, 4))
    demands = []
    for index in range(count):
        min_pool = draw(st.integers(1, 10))
        surge = draw(
            st.one_of(
                st.builds(Surge, pods=st.integers(0, 5)),
                st.builds(Surge, percent=st.integers(0, 100)),
            )
        )
        demands.append(
            PooledDemand(
                name=f"c{index}",
                replicas=draw(st.integers(0, 60)),
                min_pool=min_pool,
                max_pool=draw(st.integers(min_pool, 60)),
                weight=draw(st.integers(1, 5)),
                surge=surge,
                pods_present=draw(st.integers(0, 80)),
            )
        )
    return demands


fixed_demands = st.lists(
    st.builds(
        FixedDemand,
        name=st.sampled_from(["worker", "relay", "migrations"]),
        pods=st.integers(0, 10),
        connections_per_pod=st.integers(0, 8),
    ),
    max_size=3,
    unique_by=lambda demand: demand.name,
)


@settings(max_examples=400)
@given(
    pooled=pooled_demands(),
    fixed=fixed_demands,
    capacity=st.integers(0, 3000),
    reserve=st.integers(0, 50),
)
def test_the_allocation_never_exceeds_a_feasible_budget_and_keeps_pools_in_bounds(
    pooled: list[PooledDemand], fixed: list[FixedDemand], capacity: int, reserve: int
) -> None:
    allocation = allocate(capacity, reserve, pooled, fixed)
    minimums = sum(demand.pods * demand.min_pool for demand in pooled)
    assert allocation.budget == capacity - reserve - sum(f.connections for f in fixed)
    for demand in pooled:
        share = allocation.share(demand.name)
        assert demand.min_pool <= share.pool_size <= demand.max_pool
        assert share.pods == demand.pods >= 1
    if minimums <= allocation.budget:
        assert allocation.feasible
        assert allocation.allocated <= allocation.budget
    else:
        # Reported, never silently exceeded: the minimums stay and the flag says so.
        assert not allocation.feasible
        assert allocation.allocated == minimums > allocation.budget
        assert all(
            s.pool_size == d.min_pool for s, d in zip(allocation.shares, pooled, strict=True)
        )


@settings(max_examples=300)
@given(pooled=pooled_demands(), capacity=st.integers(0, 3000))
def test_no_budget_is_left_that_a_pool_below_its_maximum_could_take(
    pooled: list[PooledDemand], capacity: int
) -> None:
    allocation = allocate(capacity, 0, pooled)
    if not allocation.feasible:
        return
    left = allocation.budget - allocation.allocated
    for demand in pooled:
        share = allocation.share(demand.name)
        assert share.pool_size == demand.max_pool or demand.pods > left


@settings(max_examples=300)
@given(pooled=pooled_demands(), capacity=st.integers(0, 3000))
def test_max_replicas_allowed_is_the_largest_count_whose_minimums_fit(
    pooled: list[PooledDemand], capacity: int
) -> None:
    allocation = allocate(capacity, 0, pooled)
    for demand in pooled:
        allowed = allocation.share(demand.name).max_replicas_allowed
        others = sum(d.pods * d.min_pool for d in pooled if d.name != demand.name)

        def fits(replicas: int, demand: PooledDemand = demand, others: int = others) -> bool:
            return others + demand.pods_at(replicas) * demand.min_pool <= allocation.budget

        if allowed > 0:
            assert fits(allowed)
        assert not fits(allowed + 1)


@settings(max_examples=200)
@given(
    pods=st.integers(1, 30),
    weights=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    capacity=st.integers(0, 2000),
)
def test_a_heavier_consumer_never_gets_a_smaller_pool_than_an_equal_lighter_one(
    pods: int, weights: tuple[int, int], capacity: int
) -> None:
    light, heavy = sorted(weights)
    demands = [
        PooledDemand("light", replicas=pods, min_pool=1, max_pool=100, weight=light),
        PooledDemand("heavy", replicas=pods, min_pool=1, max_pool=100, weight=heavy),
    ]
    allocation = allocate(capacity, 0, demands)
    assert allocation.share("heavy").pool_size >= allocation.share("light").pool_size


def test_the_worked_example_of_the_docs() -> None:
    """docs/operator.md: max_connections 100, 3 reserved for superusers, reserve 10, two
    workers at 4 and one migration job at 2; the api at 4 replicas with a 25 % surge."""
    api = PooledDemand("api", replicas=4, min_pool=2, max_pool=20, surge=Surge.parse("25%"))
    fixed = [FixedDemand("worker", 2, 4), FixedDemand("migrations", 1, 2)]
    allocation = allocate(100 - 3, 10, [api], fixed)
    assert allocation.fixed == 10
    assert allocation.budget == 77
    assert allocation.share("api").pods == 5  # 4 + ceil(25 % of 4)
    assert allocation.share("api").pool_size == 15  # 5 x 15 = 75 <= 77
    assert allocation.allocated == 75
    # The minimum pool of 2 fits 38 pods: 30 replicas + a surge of 8.
    assert allocation.share("api").max_replicas_allowed == 30


def test_scaling_out_shrinks_the_pools_and_scaling_in_grows_them() -> None:
    def pool(replicas: int) -> int:
        api = PooledDemand("api", replicas=replicas, min_pool=1, max_pool=10, surge=Surge(1))
        return allocate(40, 4, [api]).share("api").pool_size

    assert [pool(r) for r in (2, 12, 3)] == [10, 2, 9]


def test_a_budget_too_small_keeps_the_minimums_and_says_so() -> None:
    api = PooledDemand("api", replicas=14, min_pool=2, max_pool=10)
    allocation = allocate(30, 5, [api])
    assert allocation.share("api").pool_size == 2
    assert allocation.allocated == 28 > allocation.budget == 25
    assert not allocation.feasible
    assert allocation.share("api").max_replicas_allowed == 12  # 12 x 2 = 24 <= 25


def test_weights_split_the_room_between_two_pooled_consumers() -> None:
    demands = [
        PooledDemand("api", replicas=2, min_pool=1, max_pool=50, weight=3),
        PooledDemand("admin-api", replicas=2, min_pool=1, max_pool=50, weight=1),
    ]
    allocation = allocate(80, 0, demands)
    assert allocation.share("api").pool_size == 30
    assert allocation.share("admin-api").pool_size == 10


def test_a_rollout_holding_more_pods_than_planned_is_sized_for_them() -> None:
    api = PooledDemand("api", replicas=3, min_pool=1, max_pool=20, pods_present=7)
    assert allocate(50, 0, [api]).share("api").pool_size == 7  # 7 pods x 7 = 49


@pytest.mark.parametrize(
    ("value", "replicas", "extra"),
    [(None, 10, 0), (2, 10, 2), ("3", 10, 3), ("25%", 10, 3), ("25%", 4, 1), ("0%", 9, 0)],
)
def test_surge_follows_the_deployment_rounding(
    value: int | str | None, replicas: int, extra: int
) -> None:
    assert Surge.parse(value).at(replicas) == extra


def test_invalid_pool_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="minPoolSize"):
        PooledDemand("api", replicas=1, min_pool=5, max_pool=2)
