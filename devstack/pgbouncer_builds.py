"""The two PgBouncer builds the local stack and the tests run.

* :data:`CURRENT_PGBOUNCER`: 1.24.1, built from Debian 13's source package by
  ``devstack/build-pgbouncer.sh`` (``make deps`` runs it) into ``.cache/``. The local
  stack and the tests run it by default, and the chart's sidecar image is built by the
  same script, so what is proven here is what the cluster runs. It tracks prepared
  statements across server connections (``max_prepared_statements``, since 1.21), so the
  api may cache them.
* :data:`DEBIAN_12_PGBOUNCER`: Debian 12's own package, 1.18, which cannot: the "old
  pooler" on which the api's safe mode (``db.pooler_tracks_prepared_statements=false``)
  is proven, as it would run behind a pooler we do not control.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

# Pinned in devstack/build-pgbouncer.sh too; a test checks that both agree.
PGBOUNCER_VERSION = "1.24.1"
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-pgbouncer.sh"
_CACHE = Path(__file__).resolve().parents[1] / ".cache"


@dataclass(frozen=True)
class PgBouncerBuild:
    """One PgBouncer binary and what it can do."""

    version: str
    binary: Path
    # PgBouncer >= 1.21: `max_prepared_statements` exists (older releases refuse the key).
    can_track_prepared_statements: bool
    # Since 1.23 SIGTERM waits for every client to disconnect ("super safe shutdown") and
    # SIGQUIT is the immediate shutdown SIGTERM used to be: a stop or an outage in a test
    # must not wait for the clients of the pool it takes away.
    immediate_shutdown_signal: signal.Signals
    install_hint: str


CURRENT_PGBOUNCER = PgBouncerBuild(
    version=PGBOUNCER_VERSION,
    binary=_CACHE / f"pgbouncer-{PGBOUNCER_VERSION}" / "bin" / "pgbouncer",
    can_track_prepared_statements=True,
    immediate_shutdown_signal=signal.SIGQUIT,
    install_hint="run `make deps` (devstack/build-pgbouncer.sh)",
)

DEBIAN_12_PGBOUNCER = PgBouncerBuild(
    version="1.18.0",
    binary=Path("/usr/sbin/pgbouncer"),
    can_track_prepared_statements=False,
    immediate_shutdown_signal=signal.SIGTERM,
    install_hint="run `make deps` (Debian's pgbouncer package)",
)
