#!/usr/bin/env bash
# Install what the local stack and the tests need on Debian/Ubuntu, then the Python env.
#
# Checks for a Postgres server (/usr/lib/postgresql/*/bin/postgres), pgbouncer,
# redis-server, curl and uv; installs only what is missing, and builds the pinned current
# PgBouncer into .cache/ (devstack/build-pgbouncer.sh). Idempotent and quick when nothing
# is: `make up` and `make test` run it every time. With --bench, also wrk (`make bench`).
set -euo pipefail

bench=
if [ "${1:-}" = "--bench" ]; then
    bench=1
fi

cd "$(dirname "$0")/.."
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

# Install daemons' packages without letting Debian start (and enable) their system
# services: the stack runs its own copies on its own ports, and a system Prometheus on
# :9090 or exporters on their default ports would collide with them.
apt_install_quiet_daemons() {
    local policy=/usr/sbin/policy-rc.d created=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        created=1
    fi
    apt_install "$@"
    if [ -n "$created" ]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        for unit in "$@"; do
            "${sudo[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
}

packages=()
# Debian 12's PgBouncer 1.18: the "old pooler" the api's safe mode is tested against.
have pgbouncer || packages+=(pgbouncer)
have redis-server || packages+=(redis-server)
# The README's tour and the test that runs it.
have curl || packages+=(curl)
if [ -n "$bench" ]; then
    have wrk || packages+=(wrk)
fi
if ! have uv && ! have pipx && ! python3 -m pip --version >/dev/null 2>&1; then
    packages+=(pipx)
fi
if [ ${#packages[@]} -gt 0 ]; then
    apt_install "${packages[@]}"
fi

# Monitoring: Prometheus (+ promtool) and the exporters the chart runs as sidecars.
daemons=()
have prometheus || daemons+=(prometheus)
have prometheus-redis-exporter || daemons+=(prometheus-redis-exporter)
have prometheus-postgres-exporter || daemons+=(prometheus-postgres-exporter)
if [ ${#daemons[@]} -gt 0 ]; then
    apt_install_quiet_daemons "${daemons[@]}"
fi
# The PgBouncer the stack and the tests run (and the chart's sidecar image): 1.24.1 from
# Debian 13's source package, which can track prepared statements.
devstack/build-pgbouncer.sh

# spreaker's PgBouncer exporter pins old libraries, so it gets a virtualenv of its own
# on Debian's Python, with Debian's psycopg2 (its pinned 2.8.5 does not build on 3.11).
pgb_venv=.cache/pgbouncer-exporter
if [ ! -x "$pgb_venv/bin/pgbouncer-exporter" ]; then
    /usr/bin/python3 -c 'import ensurepip, psycopg2, yaml' 2>/dev/null || apt_install python3-psycopg2 python3-yaml python3-venv
    rm -rf "$pgb_venv"
    /usr/bin/python3 -m venv --system-site-packages "$pgb_venv"
    "$pgb_venv/bin/pip" install --quiet --no-deps \
        prometheus-pgbouncer-exporter==2.1.2 prometheus-client==0.8.0 python-json-logger==0.1.11
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
