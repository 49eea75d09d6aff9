"""``make bench``: wrk against the local stack and two floors, printed as a table.

Scenarios, all under the api's gunicorn + uvicorn-worker setup (same config module,
same worker count), one at a time, each warmed up first:

* cached: the api, on the local stack's Postgres, PgBouncer and cache Redis (``make up``),
  ``GET /products?category=cat3``;
* cached, no limiter: the same with ``STAMPEDE_RATE_LIMIT__ENABLED=false``: what the
  rate limiter (on in every other api row, admitting everything) costs a cached hit;
* uncached: the same route on an api instance with ``STAMPEDE_CACHE__ENABLED=false``;
* same bytes: a bare ASGI app sending the cached response's exact status, headers and
  body, captured from the cached run — the ceiling for any cache answering in Python;
* FastAPI hello: a FastAPI app with one route returning a dict;
* bare ASGI: an ASGI callable that sends a constant response.

The machine is shared and noisy: compare the ratios, not the absolute numbers.

``--isolate`` pins each server (one worker) to the last CPU and wrk (one thread) to the
others, so the load generator never takes the server's core: on a 2-core machine the
default run shares both cores, which adds wrk's constant cost to every scenario and
pulls all ratios towards 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from devstack.servers import LOCALHOST, free_port
from devstack.stack import API_COMMAND, API_ENV, API_URL, STACK_DIR
from devstack.supervision import VENV_BIN

HOT_PATH = "/products?category=cat3"
FLOORS = ("fastapi-hello", "bare-asgi", "same-bytes")  # no /readyz: they answer on /
# Set per connection or per response by the server itself, so not replayed.
_SERVER_HEADERS = frozenset({"date", "server", "connection", "transfer-encoding"})
GUNICORN = [str(VENV_BIN / "gunicorn"), "-c", "python:services.api.gunicorn_conf"]
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def wrk(
    url: str, *, seconds: int, connections: int, threads: int, cpus: str | None = None
) -> tuple[float, float, float]:
    out = subprocess.run(
        pinned(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url], cpus
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    if re.search(r"Non-2xx or 3xx responses", out):
        raise SystemExit(f"{url} answered errors under load:\n{out}")
    return rps, p50, p99


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return int(response.status) == 200
    except OSError:
        return False


@contextmanager
def gunicorn(
    app: list[str], name: str, extra_env: dict[str, str], cpus: str | None = None
) -> Iterator[str]:
    """A gunicorn with the api's config, on free ports; stopped on exit.

    Every scenario is started this way, logging to a file, so none pays for another's
    log handling (the stack's own api logs through supervisord).
    """
    port = free_port()
    env = {
        **os.environ,
        **API_ENV,
        "STAMPEDE_SERVER__BIND": f"{LOCALHOST}:{port}",
        # Its own metrics port and multiprocess directory: never the stack api's.
        "STAMPEDE_METRICS__BIND": f"{LOCALHOST}:{free_port()}",
        "STAMPEDE_METRICS__MULTIPROC_DIR": str(STACK_DIR / f"bench-{name}-metrics"),
        **extra_env,
    }
    log = STACK_DIR / "logs" / f"bench-{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            pinned([*GUNICORN, *app], cpus),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{LOCALHOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url + ("/" if name in FLOORS else "/readyz")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {log}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        finally:
            # uvicorn workers outlive a master that did not stop them: never leave any.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def capture(url: str) -> dict[str, object]:
    """The response as wrk receives it (no Accept-Encoding), for the same-bytes ceiling."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return {
            "status": response.status,
            "headers": [
                (name.lower(), value)
                for name, value in response.getheaders()
                if name.lower() not in _SERVER_HEADERS
            ],
            "body": response.read().decode("latin-1"),
        }


def measure(name: str, url: str, args: argparse.Namespace) -> Result:
    load = {"connections": args.connections, "threads": args.threads, "cpus": args.wrk_cpus}
    wrk(url, seconds=args.warmup, **load)
    rps, p50, p99 = wrk(url, seconds=args.duration, **load)
    print(f"  {name:<16} {rps:>10.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", flush=True)
    return Result(name, rps, p50, p99)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--isolate", action="store_true", help="servers (1 worker) and wrk on separate CPUs"
    )
    args = parser.parse_args()
    args.wrk_cpus = server_cpus = None
    env: dict[str, str] = {}
    if args.isolate:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            print("--isolate needs two CPUs and taskset (util-linux)", file=sys.stderr)
            return 1
        server_cpus, args.wrk_cpus = str(cpus[-1]), ",".join(map(str, cpus[:-1]))
        args.threads = len(cpus) - 1
        env = {"STAMPEDE_SERVER__WORKERS": "1"}
    if shutil.which("wrk") is None:
        print("wrk is missing: `make bench` installs it", file=sys.stderr)
        return 1
    if not _ready(API_URL + "/readyz"):
        print(f"the local stack's api does not answer on {API_URL}: run `make up`", file=sys.stderr)
        return 1

    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, one at a time")
    if args.isolate:
        print(f"servers: 1 worker on CPU {server_cpus}; wrk on CPU {args.wrk_cpus}")
    results = []
    captured = STACK_DIR / "bench-response.json"
    same_bytes = {"STAMPEDE_BENCH_RESPONSE": str(captured)}
    scenarios = [
        ("cached", API_COMMAND[-1:], HOT_PATH, {}),
        (
            "cached, no limiter",
            API_COMMAND[-1:],
            HOT_PATH,
            {"STAMPEDE_RATE_LIMIT__ENABLED": "false"},
        ),
        ("uncached", API_COMMAND[-1:], HOT_PATH, {"STAMPEDE_CACHE__ENABLED": "false"}),
        ("same bytes", ["bench.floors.same_bytes:app"], "/", same_bytes),
        ("fastapi hello", ["bench.floors.fastapi_hello:app"], "/", {}),
        ("bare ASGI", ["bench.floors.bare_asgi:app"], "/", {}),
    ]
    for name, app, path, extra in scenarios:
        slug = name.replace(" ", "-").lower()
        with gunicorn(app, slug, {**env, **extra}, server_cpus) as url:
            results.append(measure(name, url + path, args))
            if name == "cached":
                captured.write_text(json.dumps(capture(url + path)))

    by_name = {result.name: result for result in results}
    hello, bare = by_name["fastapi hello"].rps, by_name["bare ASGI"].rps
    print()
    print("| scenario | req/s | p50 ms | p99 ms | x FastAPI hello | x bare ASGI |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.rps / hello:.2f} | {r.rps / bare:.2f} |"
        )
    cached = by_name["cached"]
    print()
    print(
        f"cached = {cached.rps / by_name['same bytes'].rps:.2f}x the same bytes from bare ASGI "
        "(the ceiling for a cache answering in Python under this server)"
    )
    checks = {
        "cached ≥ 2x FastAPI hello": cached.rps >= 2 * hello,
        "cached ≥ 0.5x bare ASGI": cached.rps >= 0.5 * bare,
        # Issue #14: the limiter must not eat the cache's gains.
        "cached with the limiter ≥ 0.85x without": (
            cached.rps >= 0.85 * by_name["cached, no limiter"].rps
        ),
        f"cached p99 < 20 ms at {args.connections} connections": cached.p99_ms < 20,
    }
    print()
    for label, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
