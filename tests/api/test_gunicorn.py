"""The production server: gunicorn with uvicorn workers, as the local stack and the
chart run it — several workers, JSON logs, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.devstack.servers import free_port
from tests.conftest import DatabaseEndpoint, RedisEndpoint

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    base_url: str
    metrics_url: str
    log_path: Path

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


@pytest.fixture
def gunicorn(
    tmp_path: Path,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> Iterator[Gunicorn]:
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "STAMPEDE_PROFILE": "prod",
        "STAMPEDE_DB__URL": pgbouncer_server.url,
        "STAMPEDE_REDIS__CACHE_URL": cache_redis_server.url,
        "STAMPEDE_SERVER__BIND": f"127.0.0.1:{port}",
        "STAMPEDE_SERVER__WORKERS": "2",
        "STAMPEDE_SERVER__GRACEFUL_TIMEOUT_S": "20",
        "STAMPEDE_METRICS__BIND": f"127.0.0.1:{metrics_port}",
        "STAMPEDE_METRICS__MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [GUNICORN, "-c", "python:services.api.gunicorn_conf", "services.api.main:create_app()"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(
        process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", log_path
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.slow
async def test_workers_logs_and_graceful_shutdown(
    gunicorn: Gunicorn, db: asyncpg.Connection, clean_database: None
) -> None:
    assert len(gunicorn.worker_pids()) == 2

    async with httpx.AsyncClient(base_url=gunicorn.base_url, timeout=30) as client:
        product = (
            await client.post(
                "/products", json={"name": "Lamp", "category": "cat1", "price_cents": 1, "stock": 1}
            )
        ).json()
        await client.get("/users/1", headers={"X-Request-ID": "trace-me"})
        await asyncio.gather(*(client.get("/livez") for _ in range(50)))

        # One exposition for all workers, on its own port, never on the public one.
        assert (await client.get("/metrics")).status_code == 404
        exposition = (await client.get(gunicorn.metrics_url)).text
        assert 'route="/livez",status_class="2xx"} 50.0' in exposition
        assert "stampede_db_pool_capacity 40.0" in exposition  # 2 workers x (10 + 10)

        # Hold the product's row lock so the next PATCH is in flight when SIGTERM arrives.
        locker = db.transaction()
        await locker.start()
        await db.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product["id"])
        in_flight = asyncio.create_task(
            client.patch(f"/products/{product['id']}", json={"stock": 7})
        )
        await asyncio.sleep(1.0)
        assert not in_flight.done()

        gunicorn.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        await locker.commit()

        response = await asyncio.wait_for(in_flight, timeout=20)
        assert response.status_code == 200
        assert response.json()["stock"] == 7

    assert await asyncio.to_thread(gunicorn.process.wait, 30) == 0

    access = [json.loads(line) for line in gunicorn.log_lines() if '"stampede.access"' in line]
    traced = [entry for entry in access if entry.get("request_id") == "trace-me"]
    assert traced, gunicorn.log_lines()[-20:]
    assert traced[0]["route"] == "/users/{user_id}"
    assert traced[0]["status"] == 404
