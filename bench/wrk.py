"""wrk, the closed-loop load generator: run it and read its report."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
# wrk's default (2 s) counts a slow order as an error and drops its latency from the
# percentiles; the open-loop generator waits as long.
TIMEOUT_S = 10
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass(frozen=True)
class WrkReport:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # Answers outside 2xx/3xx, and connect/read/write errors and timeouts.
    failed: int = 0
    socket_errors: int = 0

    @property
    def rps(self) -> float:
        """Successful answers per second (wrk's own Requests/sec counts failures too)."""
        return (self.requests - self.failed) / self.seconds

    @property
    def errors(self) -> int:
        return self.failed + self.socket_errors


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"wrk's report has no {pattern!r}:\n{text}")
    return match


def parse(report: str) -> WrkReport:
    """The figures of ``wrk --latency``'s report."""
    done = _search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", report)
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    return WrkReport(
        requests=int(done[1]),
        seconds=_ms(done[2] + done[3]) / 1e3,
        p50_ms=_ms(_search(r"\s50%\s+(\S+)", report)[1]),
        p99_ms=_ms(_search(r"\s99%\s+(\S+)", report)[1]),
        failed=int(failed[1]) if failed else 0,
        socket_errors=sum(map(int, sockets.groups())) if sockets else 0,
    )


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    cpus: str | None = None,
    script: str | None = None,
    script_args: tuple[object, ...] = (),
    headers: tuple[str, ...] = (),
) -> WrkReport:
    """``wrk --latency`` against ``url``, with ``bench/lua/<script>`` if given and each of
    ``headers`` (``"Name: value"``) on every request."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command.append(f"--timeout={TIMEOUT_S}s")
    for header in headers:
        command += ["-H", header]
    if script is not None:
        command += ["-s", str(LUA_DIR / script)]
    command.append(url)
    if script_args:
        command += ["--", *map(str, script_args)]
    out = subprocess.run(pinned(command, cpus), capture_output=True, text=True, check=True)
    return parse(out.stdout)
