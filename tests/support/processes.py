"""The worker side as the tests run it: worker and relay processes (each in its own
process group), the broker Redis, and the shrunk timings they run with."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import redis

from devstack.servers import LOCALHOST, RedisServer, free_port, tail
from devstack.stack import RELAY_COMMAND, REPO, WORKER_COMMAND
from tests.support.endpoints import Restartable


class Process:
    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self._offset = log_path.stat().st_size
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **env},
            start_new_session=True,
        )

    def output(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                state = f"exited with {code}" if code is not None else f"silent for {timeout}s"
                raise AssertionError(f"{self.name} {state}:\n{tail(self.log_path, 60)}")
            time.sleep(0.1)

    def kill9(self) -> None:
        """SIGKILL the whole process group (a Celery worker and its pool children), as an
        OOM kill or a node loss would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


TIMINGS: dict[str, dict[str, Any]] = {
    "broker": {"visibility_timeout_s": 10, "restore_interval_s": 1, "connect_timeout_s": 1},
    "worker": {
        "concurrency": 2,
        "soft_time_limit_s": 4,
        "time_limit_s": 6,
        "claim_lease_s": 8,
        "max_retries": 3,
        "retry_backoff_s": 1,
        "retry_backoff_max_s": 2,
    },
    # Above every test's wait for its emails: a republish there would be the sweep's
    # doing, not what a test (e.g. two relays never publishing a row twice) looks at.
    "relay": {"poll_interval_s": 0.5, "republish_after_s": 300},
}


class BrokerRedis(Restartable):
    """The broker Redis (noeviction, AOF), which a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(RedisServer(workdir=workdir, port=free_port(), role="broker"))
        self.url = f"redis://{LOCALHOST}:{self.server.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


class Processes:
    """Starts workers and relays for one test and stops whatever is left at its end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self._running: list[Process] = []

    def worker(self) -> Process:
        node = f"test-{uuid.uuid4().hex[:8]}@%h"
        process = self._start("worker", [*WORKER_COMMAND, "-n", node])
        process.wait_for_output(" ready.", timeout=60)
        return process

    def relay(self) -> Process:
        process = self._start("relay", RELAY_COMMAND)
        process.wait_for_output("relay started", timeout=60)
        return process

    def _start(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self._env, self._log_dir / f"{name}.log")
        self._running.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self._running):
            process.stop()
