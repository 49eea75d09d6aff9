"""PgBouncer set up as the chart's api sidecar under the operator (docs/operator.md):
``%include``s a ``pool.ini`` at the end of its ``[pgbouncer]`` section, has an admin user
for the operator, and listens on its own "pod IP" (an address of 127.0.0.0/8) on the port
every pod shares."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from devstack.host import LOCALHOST, accepts_tcp, own, unprivileged_user
from devstack.pgbouncer_builds import CURRENT_PGBOUNCER
from devstack.servers import SERVER_LOGIN_RETRY_S, ServerError

OPERATOR_ADMIN = "pool-admin"
OPERATOR_ADMIN_PASSWORD = "pool-admin-secret"


@dataclass(frozen=True)
class SidecarPgBouncer:
    """One "pod"'s PgBouncer; ``pool_file`` stands for the ConfigMap mounted in the pod."""

    workdir: Path
    address: str
    port: int
    postgres_port: int
    db_name: str
    app_user: str
    app_password: str
    pool_file: Path
    # Whom admin_users names: a pod that lists someone else refuses the operator.
    admin_user: str = OPERATOR_ADMIN
    run_as: str | None = field(default_factory=unprivileged_user)

    name = "pgbouncer"
    stop_signal = CURRENT_PGBOUNCER.immediate_shutdown_signal

    def prepare(self) -> None:
        own(self.workdir, self.run_as, mode=0o700)
        users = {self.app_user: self.app_password, OPERATOR_ADMIN: OPERATOR_ADMIN_PASSWORD}
        self._write(
            self.workdir / "userlist.txt",
            "".join(f'"{user}" "{password}"\n' for user, password in users.items()),
        )
        self._write(
            self.workdir / "pgbouncer.ini",
            f"""\
[databases]
{self.db_name} = host={LOCALHOST} port={self.postgres_port} dbname={self.db_name}

[pgbouncer]
listen_addr = {self.address}
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.workdir / "userlist.txt"}
admin_users = {self.admin_user}
stats_users = {self.app_user}
pool_mode = transaction
max_client_conn = 1000
server_login_retry = {SERVER_LOGIN_RETRY_S}
server_reset_query =
ignore_startup_parameters = extra_float_digits
max_prepared_statements = 200
logfile =
pidfile =
syslog = 0
%include {self.pool_file}
""",
        )

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o600)
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def command(self) -> list[str]:
        if not CURRENT_PGBOUNCER.binary.exists():
            raise ServerError(f"PgBouncer not found: {CURRENT_PGBOUNCER.install_hint}")
        return [str(CURRENT_PGBOUNCER.binary), str(self.workdir / "pgbouncer.ini")]

    def is_ready(self) -> bool:
        return accepts_tcp(self.port, host=self.address)
