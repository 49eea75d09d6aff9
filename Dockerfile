# One image for every process (api, worker, relay, migrations); the command
# differs. Multi-stage: uv resolves from the lock file in the build stage only. Two small
# sidecar targets (`--target pgbouncer`, `--target pgbouncer-exporter`) package the same
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

# PgBouncer 1.24.1, built from Debian trixie's source package by the very script that
# builds the local stack's (devstack/build-pgbouncer.sh), so pool behaviour proven locally
# holds in the cluster. Debian bookworm's own package is 1.18, which cannot track prepared
# statements.
FROM ${BASE_IMAGE} AS pgbouncer-build
COPY devstack/build-pgbouncer.sh /src/devstack/
RUN /src/devstack/build-pgbouncer.sh /opt/pgbouncer

# The PgBouncer sidecar (chart: pgbouncer.image): that binary, with the packages of the
# shared libraries it links (the build lists them). The chart mounts pgbouncer.ini and a
# start script; PgBouncer refuses to run as root.
FROM ${BASE_IMAGE} AS pgbouncer
COPY --from=pgbouncer-build /opt/pgbouncer/runtime-packages /tmp/pgbouncer-runtime-packages
RUN apt-get update \
 && xargs -a /tmp/pgbouncer-runtime-packages apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/pgbouncer-runtime-packages \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stampede
COPY --from=pgbouncer-build /opt/pgbouncer/bin/pgbouncer /usr/local/bin/pgbouncer
USER 10001:10001
EXPOSE 6432
CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]

# The PgBouncer exporter sidecar (chart: metrics.pgbouncerExporter.image): spreaker's
# prometheus-pgbouncer-exporter 2.1.2 from PyPI, installed exactly as the local stack
# installs it (devstack/install-deps.sh): its own venv on Debian's Python, with
# Debian's psycopg2 (its pinned psycopg2 2.8.5 does not build on Python 3.11). Debian's
# package of the same name is a different exporter that crashes on PgBouncer >= 1.8.
FROM ${BASE_IMAGE} AS pgbouncer-exporter
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-psycopg2 python3-yaml ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv --system-site-packages /opt/pgbouncer-exporter \
 && /opt/pgbouncer-exporter/bin/pip install --no-cache-dir --no-deps \
      prometheus-pgbouncer-exporter==2.1.2 prometheus-client==0.8.0 python-json-logger==0.1.11 \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stampede
USER 10001:10001
EXPOSE 9127
ENTRYPOINT ["/opt/pgbouncer-exporter/bin/pgbouncer-exporter"]
CMD ["--config", "/etc/pgbouncer/exporter.yml"]

# The application image (the default target): api, worker, relay, migrations.
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
