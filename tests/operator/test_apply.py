"""The order of applying a pool size: shrink = pods then the store, grow = the store then
pods; one pod's failure is retried and reported while the others are applied."""

from __future__ import annotations

import pytest

from services.operator import pool_file
from services.operator.apply import PodEndpoint, Push, StoreError, apply_pool_size
from services.operator.pgbouncer_console import PushError


class RecordingStore:
    """A PoolStore keeping its value in memory and the order of calls in ``log``."""

    def __init__(self, log: list[str], value: int | None, fail_writes: bool = False) -> None:
        self.log = log
        self.value = value
        self.fail_writes = fail_writes

    async def read(self) -> int | None:
        return self.value

    async def write(self, pool_size: int) -> None:
        self.log.append(f"store={pool_size}")
        if self.fail_writes:
            raise StoreError("forbidden")
        self.value = pool_size


PODS = [PodEndpoint("a", "10.0.0.1", 6432), PodEndpoint("b", "10.0.0.2", 6432)]


def recording_push(
    log: list[str], refuse: frozenset[str] = frozenset(), flaky: dict[str, int] | None = None
) -> Push:
    flaky = dict(flaky or {})

    async def push(pod: PodEndpoint, pool_size: int) -> None:
        if pod.name in refuse:
            log.append(f"{pod.name}!")
            raise PushError(f"{pod.host}: refused")
        if flaky.get(pod.name, 0) > 0:
            flaky[pod.name] -= 1
            log.append(f"{pod.name}?")
            raise PushError(f"{pod.host}: timeout")
        log.append(f"{pod.name}={pool_size}")

    return push


async def test_shrinking_pushes_to_the_pods_before_writing_the_store() -> None:
    log: list[str] = []
    outcome = await apply_pool_size(3, PODS, RecordingStore(log, 10), recording_push(log))
    assert log == ["a=3", "b=3", "store=3"]
    assert outcome.complete
    assert outcome.previous == 10
    assert outcome.applied == ("a", "b")


async def test_growing_writes_the_store_before_pushing_to_the_pods() -> None:
    log: list[str] = []
    await apply_pool_size(8, PODS, RecordingStore(log, 3), recording_push(log))
    assert log == ["store=8", "a=8", "b=8"]


async def test_a_missing_store_is_written_first_and_an_unchanged_one_not_at_all() -> None:
    log: list[str] = []
    await apply_pool_size(5, PODS, RecordingStore(log, None), recording_push(log))
    assert log[0] == "store=5"
    log.clear()
    await apply_pool_size(5, PODS, RecordingStore(log, 5), recording_push(log))
    assert log == ["a=5", "b=5"]


async def test_a_refusing_pod_is_retried_and_reported_while_the_others_are_applied() -> None:
    log: list[str] = []
    store = RecordingStore(log, 10)
    outcome = await apply_pool_size(
        4, PODS, store, recording_push(log, refuse=frozenset({"a"})), attempts=3, retry_delay=0.01
    )
    assert log.count("a!") == 3
    assert "b=4" in log
    assert store.value == 4
    assert outcome.applied == ("b",)
    assert outcome.failed == {"a": "10.0.0.1: refused"}
    assert not outcome.complete


async def test_a_pod_that_fails_once_is_applied_on_the_retry() -> None:
    log: list[str] = []
    outcome = await apply_pool_size(
        4, PODS, RecordingStore(log, 10), recording_push(log, flaky={"b": 1}), retry_delay=0.01
    )
    assert outcome.complete
    assert set(outcome.applied) == {"a", "b"}


async def test_a_store_that_cannot_be_written_is_reported_and_the_pods_still_applied() -> None:
    log: list[str] = []
    store = RecordingStore(log, 3, fail_writes=True)
    outcome = await apply_pool_size(8, PODS, store, recording_push(log))
    assert outcome.store_error == "forbidden"
    assert outcome.applied == ("a", "b")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (pool_file.render(7), 7),
        ("default_pool_size = 7\n", None),  # written by someone else: rewrite in full
        ("default_pool_size = 7\nmax_db_connections = 9\n", None),
        ("", None),
        (None, None),
    ],
)
def test_the_pool_file_counts_only_when_it_sets_both_keys_alike(
    text: str | None, size: int | None
) -> None:
    assert pool_file.parse(text) == size
