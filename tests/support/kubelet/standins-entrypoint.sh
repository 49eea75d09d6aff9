#!/bin/sh
# The part of the official redis and postgres images' docker-entrypoint.sh that the chart
# relies on. $1 names the image; the rest is the container's command line.
set -eu
image=$1
shift
case "${1:-}" in
    -*) set -- "$image" "$@" ;;  # options only: the server is the command (as upstream)
esac
if [ "$image" = postgres ] && [ "$1" = postgres ]; then
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        mkdir -p "$PGDATA"
        chmod 700 "$PGDATA"
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list, as upstream.
        initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        database=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
        if [ "$database" != postgres ]; then
            # Single-user mode: no server, no socket, nothing to wait for.
            echo "CREATE DATABASE \"$database\"" \
                | postgres --single -D "$PGDATA" postgres >/dev/null
        fi
    fi
    shift
    set -- postgres -c listen_addresses='*' "$@"
fi
exec "$@"
