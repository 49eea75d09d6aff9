"""Facts about this machine that servers depend on: ports, users, directories."""

from __future__ import annotations

import os
import pwd
import socket
import stat
from pathlib import Path
from typing import TypedDict

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """Whether a server could bind ``host:port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def accepts_tcp(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unprivileged_user() -> str | None:
    """The user Postgres and PgBouncer run as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def own(path: Path, user: str | None, mode: int = 0o755) -> None:
    """Create directory ``path`` (if needed) with ``mode``, owned by ``user``."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def untraversable_ancestors(path: Path, user: str | None) -> list[Path]:
    """The existing directories on the way to ``path`` that ``user`` cannot enter."""
    if user is None:
        return []
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    blocked = []
    for directory in reversed(path.absolute().parents):
        if not directory.exists():
            break
        info = directory.stat()
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            blocked.append(directory)
    return blocked


def make_traversable(path: Path, user: str | None) -> None:
    """Let ``user`` enter every directory above ``path`` (adds only the o+x bit)."""
    for directory in untraversable_ancestors(path, user):
        directory.chmod(directory.stat().st_mode | stat.S_IXOTH)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file."""
    text = path.read_text(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


class Identity(TypedDict, total=False):
    """``subprocess`` arguments that run a child as another user (we must be root)."""

    user: str
    group: int
    extra_groups: list[int]


def as_user(user: str | None) -> Identity:
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
