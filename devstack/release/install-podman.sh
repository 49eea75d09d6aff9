#!/usr/bin/env bash
# What `make image-test` needs on Debian/Ubuntu (podman without a registry):
# podman and debootstrap from apt, and runc unpacked from its Debian package into
# .cache/podman/runc (podman's default runtime, crun, fails on some cgroup setups; the
# package itself is not installed so the system's runtime choice stays as it is).
# Idempotent and quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
}

missing=()
have podman || missing+=(podman)
have debootstrap || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # podman's packages ship system services; do not let the install start any.
    policy=/usr/sbin/policy-rc.d created=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        created=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    if [ -n "$created" ]; then
        "${sudo[@]}" rm -f "$policy"
    fi
fi

runc_dir=.cache/podman/runc
if [ ! -x "$runc_dir/usr/sbin/runc" ]; then
    download=$(mktemp -d)
    (cd "$download" && apt-get download runc)
    rm -rf "$runc_dir"
    mkdir -p "$runc_dir"
    dpkg-deb -x "$download"/runc_*.deb "$runc_dir"
    rm -rf "$download"
fi
"$runc_dir/usr/sbin/runc" --version | head -1
