"""The bench's floor apps answer what they claim, over a real uvicorn: the same-bytes
ceiling replays a captured response byte for byte (but for the server's own headers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.servers import capture
from devstack.servers import LOCALHOST, free_port

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def uvicorn(app: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", LOCALHOST, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{LOCALHOST}:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_bare_floor_answers_hello() -> None:
    with uvicorn("bench.floors.bare_asgi:app", {}) as url:
        response = httpx.get(url + "/anything")
    assert response.status_code == 200
    assert response.json() == {"message": "hello"}


def test_same_bytes_replays_the_captured_response(tmp_path: Path) -> None:
    body = json.dumps({"items": [{"id": n, "name": f"Lamp {n}"} for n in range(50)]})
    captured = tmp_path / "response.json"
    captured.write_text(
        json.dumps(
            {
                "status": 200,
                "headers": [
                    ["content-type", "application/json"],
                    ["content-length", str(len(body))],
                    ["etag", '"abc"'],
                    ["x-cache", "hit"],
                ],
                "body": body,
            }
        )
    )
    with uvicorn("bench.floors.same_bytes:app", {"STAMPEDE_BENCH_RESPONSE": str(captured)}) as url:
        replayed = capture(url + "/")
    expected = json.loads(captured.read_text())
    assert replayed["status"] == expected["status"]
    assert replayed["body"] == expected["body"]
    # uvicorn adds date and server itself; capture() leaves them out, so the replay
    # does not send them twice.
    assert replayed["headers"] == [tuple(pair) for pair in expected["headers"]]
