# One image for every process (api, worker, relay, migrations, operator); the command
# differs. Multi-stage: uv resolves from the lock file in the build stage only. Two small
# sidecar targets (`--target pgbouncer`, `--target pgbouncer-exporter`) package the Debian
# software the local stack runs; the last stage, the app, is the default target.
#
# The base is plain Debian with its Python 3.11, the same interpreter the tests run on.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG UV_VERSION=0.13.9
RUN python3 -m pip install --no-cache-dir --break-system-packages "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first: this layer is reused until the lock file changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY services ./services

# The PgBouncer sidecar (chart: pgbouncer.image): Debian bookworm's PgBouncer 1.18, the very
# package the local stack runs, so pool behaviour proven locally holds in the cluster.
# The chart mounts pgbouncer.ini and a start script; PgBouncer refuses to run as root.
FROM ${BASE_IMAGE} AS pgbouncer
RUN apt-get update \
 && apt-get install -y --no-install-recommends pgbouncer \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stampede
USER 10001:10001
EXPOSE 6432
CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]

# The PgBouncer exporter sidecar (chart: metrics.pgbouncerExporter.image): Debian's
# prometheus-pgbouncer-exporter 1.7, the Python spreaker exporter the local stack runs —
# not the Go prometheus-community one, whose metric names differ. No upstream image of it
# is maintained, hence ours. Configured by environment (PGBOUNCER_HOST/PORT/USER, PGPASSWORD).
FROM ${BASE_IMAGE} AS pgbouncer-exporter
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus-pgbouncer-exporter \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stampede
USER 10001:10001
EXPOSE 9127
CMD ["prometheus-pgbouncer-exporter", "--licence-location", "/usr/share/doc/prometheus-pgbouncer-exporter/copyright"]

# The application image (the default target): api, worker, relay, migrations, operator.
FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stampede
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/services /app/services
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STAMPEDE_SERVER__BIND=0.0.0.0:8000
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "-c", "python:services.api.gunicorn_conf", "services.api.main:create_app()"]
