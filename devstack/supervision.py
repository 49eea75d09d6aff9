"""supervisord for the local stack: its config file, its daemon and its XML-RPC API.

supervisord (the ``supervisor`` package in the venv) keeps every process of the stack
running in the foreground under one parent, restarts crashed ones, writes their logs
and stops them all, process groups included, with ``shutdown``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from supervisor.xmlrpc import Faults, SupervisorTransport

from devstack.servers import Server, tail

VENV_BIN = Path(sys.executable).parent


class SupervisorError(RuntimeError):
    """supervisord could not be started or refused a request."""


@dataclass(frozen=True)
class Program:
    """One ``[program:x]`` section."""

    name: str
    command: list[str]
    directory: Path
    user: str | None = None
    stopsignal: str = "TERM"
    autostart: bool = True
    priority: int = 100
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_server(cls, server: Server, priority: int) -> Program:
        return cls(
            name=server.name,
            command=server.command(),
            directory=server.workdir,
            user=server.run_as,
            stopsignal=server.stop_signal.name.removeprefix("SIG"),
            priority=priority,
        )


def _value(text: str) -> str:
    # supervisord expands %(name)s in every value.
    return text.replace("%", "%%")


@dataclass(frozen=True)
class Supervisor:
    """The supervisord whose files (config, pid, socket, logs) live in ``root``."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def pid_path(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def socket_path(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def log_path(self, program: str) -> Path:
        return self.log_dir / f"{program}.log"

    def write_config(self, programs: list[Program], directory: Path) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        sections = [
            f"""\
[unix_http_server]
file = {_value(str(self.socket_path))}
chmod = 0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{_value(str(self.socket_path))}

[supervisord]
pidfile = {_value(str(self.pid_path))}
logfile = {_value(str(self.log_path("supervisord")))}
childlogdir = {_value(str(self.log_dir))}
directory = {_value(str(directory))}
; PgBouncer accepts up to max_client_conn clients, one descriptor each.
minfds = 4096
{"user = root" if os.geteuid() == 0 else ""}
"""
        ]
        for program in programs:
            lines = [
                f"[program:{program.name}]",
                f"command = {_value(shlex.join(program.command))}",
                f"directory = {_value(str(program.directory))}",
                f"priority = {program.priority}",
                f"autostart = {str(program.autostart).lower()}",
                "autorestart = true",
                "startsecs = 1",
                f"stopsignal = {program.stopsignal}",
                "stopwaitsecs = 30",
                "stopasgroup = true",
                "killasgroup = true",
                "redirect_stderr = true",
                f"stdout_logfile = {_value(str(self.log_path(program.name)))}",
            ]
            if program.user is not None:
                lines.append(f"user = {program.user}")
            if program.environment:
                pairs = (f'{key}="{value}"' for key, value in program.environment.items())
                lines.append(f"environment = {_value(','.join(pairs))}")
            sections.append("\n".join(lines) + "\n")
        self.config_path.write_text("\n".join(sections))

    def pid(self) -> int | None:
        """The pid of our supervisord if it runs (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_supervisord(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start_daemon(self, timeout: float = 30.0) -> None:
        """Start supervisord (it daemonizes) and wait until it answers."""
        startup_log = self.log_path("supervisord-startup")
        with startup_log.open("w") as out:
            result = subprocess.run(
                [str(VENV_BIN / "supervisord"), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise SupervisorError(f"supervisord failed to start:\n{startup_log.read_text()}")
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, xmlrpc.client.Error, SupervisorError):
                if self.state() == "RUNNING":
                    return
            if time.monotonic() > deadline:
                raise SupervisorError(f"supervisord did not answer within {timeout}s")
            time.sleep(0.1)

    @contextlib.contextmanager
    def _rpc(self) -> Iterator[xmlrpc.client.ServerProxy]:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        with xmlrpc.client.ServerProxy("http://localhost", transport=transport) as proxy:
            yield proxy

    def state(self) -> str:
        with self._rpc() as rpc:
            info = cast("dict[str, object]", rpc.supervisor.getState())
        return str(info["statename"])

    def process_state(self, name: str) -> str:
        with self._rpc() as rpc:
            info = cast("dict[str, object]", rpc.supervisor.getProcessInfo(name))
        return str(info["statename"])

    def ensure_started(self, name: str) -> None:
        """Start program ``name`` unless it is already starting or running."""
        if self.process_state(name) in {"STARTING", "RUNNING"}:
            return
        with self._rpc() as rpc:
            try:
                rpc.supervisor.startProcess(name, True)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != Faults.ALREADY_STARTED:
                    log = self.log_path(name)
                    detail = f":\n{tail(log)}" if log.exists() else ""
                    raise SupervisorError(
                        f"{name} did not start ({fault.faultString}){detail}"
                    ) from None

    def process_pid(self, name: str) -> int:
        """The pid of program ``name`` (0 when it does not run)."""
        with self._rpc() as rpc:
            info = cast("dict[str, object]", rpc.supervisor.getProcessInfo(name))
        return int(cast("int", info["pid"]))

    def stop(self, name: str) -> None:
        """Stop program ``name`` with its stop signal; return once it has exited."""
        with self._rpc() as rpc:
            try:
                rpc.supervisor.stopProcess(name, True)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != Faults.NOT_RUNNING:
                    raise SupervisorError(f"{name} did not stop ({fault.faultString})") from None

    def update(self) -> None:
        """Apply a rewritten config to the running daemon (restarts changed programs)."""
        self.ctl("update", check=True)

    def ctl(self, *args: str, check: bool = False) -> int:
        """Run supervisorctl against this supervisord; its output goes to ours."""
        result = subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(self.config_path), *args], check=False
        )
        if check and result.returncode != 0:
            raise SupervisorError(f"supervisorctl {' '.join(args)} failed")
        return result.returncode

    def shutdown(self, timeout: float = 90.0) -> None:
        """Stop every program and supervisord itself; return once it has exited."""
        pid = self.pid()
        if pid is None:
            return
        self.ctl("shutdown")
        deadline = time.monotonic() + timeout
        while _is_supervisord(pid):
            if time.monotonic() > deadline:
                raise SupervisorError(f"supervisord (pid {pid}) still runs after {timeout}s")
            time.sleep(0.2)


def _is_supervisord(pid: int) -> bool:
    try:
        return b"supervisord" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
