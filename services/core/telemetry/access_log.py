"""The api's access log: one line per request, formatted cheaply and written in batches.

Through ``logging`` an access line (a LogRecord, the caller lookup, a generic JSON
formatter, a write and a flush per line) cost several times a whole cached hit. The
shape stays that of :class:`services.core.telemetry.logs.JsonFormatter` (``ts``, ``level``,
``logger``, ``msg``, ``request_id``, then the request fields), so collectors parse one
format; only the fields are fixed and the lines are buffered, as nginx's
``access_log ... buffer= flush=`` does:

* a batch is written when the next line would take it past ``PIPE_BUF`` (4096 bytes):
  a write that size is atomic on a pipe, so the gunicorn workers sharing stderr never
  interleave half lines; and ``flush_after_s`` after its first line at the latest;
* :meth:`AccessLog.flush` at shutdown writes the rest. A worker killed with SIGKILL
  loses at most ``flush_after_s`` of lines.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from typing import TextIO

from services.core.telemetry.logs import ACCESS_LOGGER

PIPE_BUF = 4096

# Every value is either ours (route templates, status, numbers), checked (request ids
# are [A-Za-z0-9._:-]) or bounded in practice (methods, client addresses), so the JSON
# string encoding of each is memoized.
_json_string = functools.lru_cache(maxsize=4096)(json.dumps)


class AccessLog:
    def __init__(
        self,
        *,
        json_format: bool = True,
        flush_after_s: float = 0.2,
        stream: TextIO | None = None,
    ) -> None:
        self.json_format = json_format
        self.flush_after_s = flush_after_s
        # None: ``sys.stderr`` as it is at write time (like the logging handlers, which
        # also write there; pytest's capture swaps it).
        self._stream = stream
        self._lines: list[str] = []
        self._size = 0
        self._second = -1
        self._second_text = ""
        self._flush_handle: asyncio.TimerHandle | None = None

    def request(
        self,
        *,
        method: str,
        route: str,
        status: int,
        duration_ms: float,
        client: str,
        request_id: str,
    ) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime(
                "%Y-%m-%dT%H:%M:%S" if self.json_format else "%Y-%m-%d %H:%M:%S",
                time.gmtime(second),
            )
        millis = int((now - second) * 1000)
        if self.json_format:
            line = (
                f'{{"ts":"{self._second_text}.{millis:03d}+00:00","level":"INFO",'
                f'"logger":"{ACCESS_LOGGER}","msg":"request","request_id":"{request_id}",'
                f'"method":{_json_string(method)},"route":{_json_string(route)},'
                f'"status":{status},"duration_ms":{duration_ms:.2f},'
                f'"client":{_json_string(client)}}}\n'
            )
        else:
            line = (
                f"{self._second_text},{millis:03d} INFO {ACCESS_LOGGER} request "
                f"{method} {route} {status} {duration_ms:.2f}ms {client} {request_id}\n"
            )
        if self._size + len(line) > PIPE_BUF:
            self.flush()
        self._lines.append(line)
        self._size += len(line)
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_handle = loop.call_later(self.flush_after_s, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            # A closed or broken stderr must not fail requests; the lines are lost, as
            # logging's handlers would lose them.
            pass
