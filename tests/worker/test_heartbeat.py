"""The worker's heartbeat file says whether its consumer consumes: it is touched while
the worker is connected to the broker, goes stale while the consumer cannot consume, and
is touched again once it is back."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.delivery import eventually
from tests.support.processes import BrokerRedis, Processes

INTERVAL_S = 0.5


def _age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime


async def test_heartbeat_follows_the_consumer(
    processes: Processes, broker: BrokerRedis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    heartbeat = tmp_path / "worker-heartbeat"
    env = {
        **worker_env,
        "STAMPEDE_WORKER__HEARTBEAT_FILE": str(heartbeat),
        "STAMPEDE_WORKER__HEARTBEAT_INTERVAL_S": str(INTERVAL_S),
    }
    workers = Processes(env, tmp_path)
    try:
        workers.worker()

        async def fresh() -> bool:
            return heartbeat.exists() and _age_s(heartbeat) < 3 * INTERVAL_S

        await eventually(fresh, 10, "the heartbeat is touched while the worker consumes")

        broker.stop()
        try:

            async def stale() -> bool:
                return _age_s(heartbeat) > 6 * INTERVAL_S

            await eventually(stale, 20, "the heartbeat goes stale while the broker is away")
        finally:
            broker.start()
        await eventually(fresh, 30, "the heartbeat is touched again once the worker consumes")
    finally:
        workers.stop_all()
