"""The production server: gunicorn with uvicorn workers, as the local stack and the
chart run it — several workers, JSON logs, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from tests.support.endpoints import DatabaseEndpoint, RedisEndpoint
from tests.support.gunicorn import Gunicorn, run_gunicorn
from tests.support.keys import bearer


@pytest.fixture
def gunicorn(
    tmp_path: Path,
    migrated_postgres: DatabaseEndpoint,
    pgbouncer_server: DatabaseEndpoint,
    cache_redis_server: RedisEndpoint,
) -> Iterator[Gunicorn]:
    with run_gunicorn(
        tmp_path,
        database_url=pgbouncer_server.url,
        cache_url=cache_redis_server.url,
        SERVER__GRACEFUL_TIMEOUT_S="20",
    ) as server:
        yield server


@pytest.mark.slow
async def test_workers_logs_and_graceful_shutdown(
    gunicorn: Gunicorn,
    db: asyncpg.Connection,
    clean_database: None,
    cache_redis: redis.Redis,
    api_token: str,
) -> None:
    await cache_redis.flushdb()  # ids restart with every test: no earlier response may leak
    assert len(gunicorn.worker_pids()) == 2

    async with httpx.AsyncClient(
        base_url=gunicorn.base_url, timeout=30, headers=bearer(api_token)
    ) as client:
        product = (
            await client.post(
                "/products", json={"name": "Lamp", "category": "cat1", "price_cents": 1, "stock": 1}
            )
        ).json()
        answer = await client.get("/users/1", headers={"X-Request-ID": "trace-me"})
        assert "server" not in answer.headers  # no software version for scanners
        await asyncio.gather(*(client.get("/livez") for _ in range(50)))

        # One exposition for all workers, on its own port, never on the public one.
        assert (await client.get("/metrics")).status_code == 404
        # /readyz answered from one worker; the other may still be in its lifespan (where
        # its pool's capacity is added), and each worker writes its request counts out
        # every second: give them a few seconds.
        livez = 'route="/livez",status_class="2xx"} 50.0'
        for _ in range(50):
            exposition = (await client.get(gunicorn.metrics_url)).text
            if "stampede_db_pool_capacity 40.0" in exposition and livez in exposition:
                break
            await asyncio.sleep(0.1)
        assert livez in exposition
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
    # Every line the server wrote, gunicorn's and uvicorn's own included, is one JSON
    # object (a collector parses them all); uvicorn's worker lines are among them.
    entries = [json.loads(line) for line in gunicorn.log_lines() if line.strip()]
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert any(entry["logger"] == "uvicorn.error" for entry in entries)
    assert any(entry["logger"] == "gunicorn.error" for entry in entries)
