"""The buffered access log: the logging JSON shape, whole lines, atomic-sized writes."""

from __future__ import annotations

import asyncio
import io
import json

from services.core.telemetry.access_log import PIPE_BUF, AccessLog


class RecordingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def log_request(log: AccessLog, n: int, method: str = "GET") -> None:
    log.request(
        method=method,
        route="/users/{user_id}",
        status=200,
        duration_ms=1.234,
        client="10.0.0.7",
        request_id=f"req-{n}",
    )


async def test_lines_are_json_in_the_logging_shape_and_flushed_after_a_delay() -> None:
    stream = RecordingStream()
    log = AccessLog(stream=stream, flush_after_s=0.05)
    log_request(log, 1)
    log_request(log, 2, method='GE"T')  # never produced by a parser; still valid JSON
    assert stream.writes == []
    await asyncio.sleep(0.15)
    assert len(stream.writes) == 1
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first == {
        "ts": first["ts"],
        "level": "INFO",
        "logger": "stampede.access",
        "msg": "request",
        "request_id": "req-1",
        "method": "GET",
        "route": "/users/{user_id}",
        "status": 200,
        "duration_ms": 1.23,
        "client": "10.0.0.7",
    }
    assert first["ts"].endswith("+00:00")
    assert len(first["ts"]) == len("2026-01-01T00:00:00.000+00:00")
    assert second["method"] == 'GE"T'


async def test_writes_stay_under_pipe_buf_and_hold_whole_lines() -> None:
    stream = RecordingStream()
    log = AccessLog(stream=stream, flush_after_s=10)
    for n in range(500):
        log_request(log, n)
    log.flush()
    assert len(stream.writes) > 1
    assert all(len(text) <= PIPE_BUF and text.endswith("\n") for text in stream.writes)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"req-{n}" for n in range(500)]


def test_outside_an_event_loop_lines_are_written_at_once() -> None:
    stream = RecordingStream()
    log = AccessLog(stream=stream, json_format=False)
    log_request(log, 1)
    assert len(stream.writes) == 1
    assert " INFO stampede.access request GET /users/{user_id} 200 " in stream.writes[0]
