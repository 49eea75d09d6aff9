#!/usr/bin/env bash
# Install what the local stack and the tests need on Debian/Ubuntu, then the Python env.
#
# Checks for a Postgres server (/usr/lib/postgresql/*/bin/postgres), pgbouncer,
# redis-server and uv; installs only what is missing. Idempotent and quick when nothing
# is: `make up` and `make test` run it every time. With --bench, also wrk (`make bench`).
set -euo pipefail

bench=
if [ "${1:-}" = "--bench" ]; then
    bench=1
fi

cd "$(dirname "$0")/../.."
export PATH="$HOME/.local/bin:$PATH"

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
}

have_postgres() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || have postgres
}

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

packages=()
have pgbouncer || packages+=(pgbouncer)
have redis-server || packages+=(redis-server)
if [ -n "$bench" ]; then
    have wrk || packages+=(wrk)
fi
if ! have uv && ! have pipx && ! python3 -m pip --version >/dev/null 2>&1; then
    packages+=(pipx)
fi
if [ ${#packages[@]} -gt 0 ]; then
    apt_install "${packages[@]}"
fi

if ! have_postgres; then
    # The stack and the tests run their own clusters; keep the package from creating and
    # starting a system cluster on port 5432.
    apt_install postgresql-common
    "${sudo[@]}" sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf
    if apt-cache show postgresql-15 >/dev/null 2>&1; then
        apt_install postgresql-15
    else
        apt_install postgresql
    fi
fi

if ! have uv; then
    if have pipx; then
        pipx install uv
    elif ! python3 -m pip install --user uv; then
        # PEP 668 (Debian 12+) guards the system Python; uv has no dependencies to clash.
        python3 -m pip install --user --break-system-packages uv
    fi
    if ! have uv; then
        echo "uv was installed but is not on PATH; add \$HOME/.local/bin to PATH" >&2
        exit 1
    fi
fi

uv sync --frozen
