#!/usr/bin/env bash
# Build the pinned PgBouncer from Debian's own archive, for the local stack, the tests and
# the chart's sidecar image alike (the Dockerfile's `pgbouncer` target runs this script).
#
# Debian 12 ships PgBouncer 1.18, which cannot track prepared statements
# (`max_prepared_statements` came in 1.21). Debian 13 (trixie) ships 1.24.1; its source
# package builds on Debian 12 as it is. The trixie source index goes to a private apt
# sources list and state directory: the machine's own apt configuration is never touched.
#
# Usage: devstack/build-pgbouncer.sh [PREFIX]   (default: .cache/pgbouncer-VERSION)
# Installs PREFIX/bin/pgbouncer, and PREFIX/runtime-packages: the Debian packages whose
# shared libraries it links (what an image must install to run it). Idempotent: quick when
# PREFIX already holds the pinned version.
set -euo pipefail

# A new version is a deliberate change: the archive serving another one fails the build.
PGBOUNCER_VERSION=1.24.1
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SOURCE_SUITE=trixie

cd "$(dirname "$0")/.."
prefix=${1:-.cache/pgbouncer-$PGBOUNCER_VERSION}
binary=$prefix/bin/pgbouncer

if [ -x "$binary" ] && [ -s "$prefix/runtime-packages" ] \
    && "$binary" --version 2>/dev/null | grep -qx "PgBouncer $PGBOUNCER_VERSION"; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

# Compiler, `apt-get source`'s unpacker (dpkg-source) and PgBouncer's build dependencies
# without systemd, PAM and LDAP, which the sidecar and the stack do not use.
build_deps=(gcc make libc6-dev dpkg-dev pkg-config libevent-dev libc-ares-dev libssl-dev)
missing=()
for package in "${build_deps[@]}"; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/src"
echo "deb-src $DEBIAN_MIRROR $SOURCE_SUITE main" > "$work/sources.list"
# Only the private list and state; signatures are checked against the machine's Debian
# keyring as for any other suite. apt's download sandbox user could not write to a
# private directory owned by root, so downloads run as the caller.
private_apt=(
    -o "Dir::Etc::sourcelist=$work/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$work/lists"
    -o "APT::Sandbox::User=$(id -un)"
)
apt-get "${private_apt[@]}" update -q >"$work/update.log" 2>&1 || {
    cat "$work/update.log" >&2
    echo "could not read $SOURCE_SUITE's source index from $DEBIAN_MIRROR" >&2
    exit 1
}

served=$(apt-cache "${private_apt[@]}" showsrc pgbouncer | sed -n 's/^Version: //p' | head -n 1)
if [ "${served%%-*}" != "$PGBOUNCER_VERSION" ]; then
    echo "Debian $SOURCE_SUITE serves pgbouncer ${served:-(none)}, this recipe pins" \
        "$PGBOUNCER_VERSION: check the new release, then change PGBOUNCER_VERSION here and" \
        "in devstack/pgbouncer_builds.py" >&2
    exit 1
fi

(
    cd "$work/src"
    apt-get "${private_apt[@]}" source -q --download-only "pgbouncer=$served" >/dev/null
    # The files were verified against the signed index on download.
    dpkg-source --no-check -x ./*.dsc pgbouncer >/dev/null
    cd pgbouncer
    # systemd's socket activation is not used: the supervisor and the kubelet run it.
    ./configure --without-systemd >"$work/configure.log" 2>&1 || {
        tail -n 40 "$work/configure.log" >&2
        exit 1
    }
    make -j"$(nproc)" >"$work/make.log" 2>&1 || {
        tail -n 40 "$work/make.log" >&2
        exit 1
    }
)

built=$work/src/pgbouncer/pgbouncer
"$built" --version | grep -qx "PgBouncer $PGBOUNCER_VERSION"
mkdir -p "$prefix/bin"
# The packages that own the shared libraries it links (libevent, c-ares, OpenSSL, libc).
# A package may list a library under /lib or /usr/lib (merged /usr), or only its target.
owner() {
    local path
    for path in "$1" "$(realpath "$1")" "/usr${1#/usr}" "${1#/usr}"; do
        if dpkg-query -S "$path" 2>/dev/null | cut -d: -f1; then
            return
        fi
    done
    echo "no Debian package owns $1" >&2
    return 1
}
for library in $(ldd "$built" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
    owner "$library"
done | sort -u >"$work/runtime-packages"
install -m 0755 "$built" "$binary.new"
mv "$binary.new" "$binary"
mv "$work/runtime-packages" "$prefix/runtime-packages"
echo "built PgBouncer $PGBOUNCER_VERSION ($served from Debian $SOURCE_SUITE) into $binary"
