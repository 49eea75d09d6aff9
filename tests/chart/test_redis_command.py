"""The chart's Redis command, run as rendered with Debian's Redis 7.0.15 (the version of
the chart's image): the password comes from the environment into a config file, is
enforced, and never appears in the process's argv."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack.servers import LOCALHOST, free_port
from tests.support.chart import Helm, containers

PASSWORD = 'pa ss"wo\\rd'  # a space, a quote and a backslash: the config file's quoting


@pytest.fixture
def chart_redis(helm: Helm, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (make deps)")
    [cache] = [
        doc
        for doc in helm.template()
        if doc["kind"] == "StatefulSet" and doc["metadata"]["name"].endswith("-cache")
    ]
    [container] = [c for _, c in containers(cache) if c["name"] == "redis"]
    port = free_port()
    (tmp_path / "run").mkdir()
    (tmp_path / "data").mkdir()
    # The pod's paths and port, moved into this test's directory and onto loopback.
    argv = [
        part.replace("/run/redis", str(tmp_path / "run"))
        .replace("/data", str(tmp_path / "data"))
        .replace("0.0.0.0", LOCALHOST)
        .replace("6379", str(port))
        for part in container["command"] + container["args"]
    ]
    env = {"PATH": "/usr/bin:/bin:/usr/sbin", "REDIS_PASSWORD": PASSWORD}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(host=LOCALHOST, port=port, password=PASSWORD).ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


def test_password_is_required_and_kept_out_of_argv(
    chart_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, process = chart_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=LOCALHOST, port=port).ping()
    assert redis.Redis(host=LOCALHOST, port=port, password=PASSWORD).ping()
    # `exec` made redis-server the process itself: its argv is what `ps` shows.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    assert b"redis-server" in cmdline
    assert PASSWORD.encode() not in cmdline
