#!/usr/bin/env bash
# The kind flow for a machine with Docker and kind (not these CI machines):
#   k8s/kind.sh up     cluster + add-ons + images + the chart (skaffold run)
#   k8s/kind.sh down   delete the cluster
#   k8s/kind.sh e2e    up, port-forward, the contract tests + cluster checks, down
# helm and kubectl: from PATH, else from .cache/bin (make tools). KEDA=1 adds KEDA.
set -euo pipefail

# Pinned to what the chart tests validate against: the ServiceMonitor/PrometheusRule
# and ScaledObject models (cloudcoil-models-prometheus-operator 0.80.1, the newest
# published; cloudcoil-models-keda 2.16.1). kube-prometheus-stack 69.8.2 is the last
# release shipping prometheus-operator v0.80.1 (70.0.0 moved to v0.81.0).
KUBE_PROMETHEUS_STACK_VERSION=69.8.2
PROMETHEUS_OPERATOR_VERSION=v0.80.1  # what that release ships; a test compares the models
KEDA_VERSION=2.16.1
cd "$(dirname "$0")/.."

CLUSTER=stampede
CONTEXT="kind-$CLUSTER"
NAMESPACE=stampede
export PATH="$PWD/.cache/bin:$PATH"

need() {
    local missing=()
    for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        echo "SKIP: the kind e2e needs ${missing[*]} on PATH (Docker engine, kind, skaffold)." >&2
        echo "      The same API contract tests run against the local stack in 'make test'." >&2
        return 1
    fi
    docker info >/dev/null 2>&1 || { echo "SKIP: no Docker engine answers 'docker info'." >&2; return 1; }
}

addons() {
    helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
    helm repo add metrics-server https://kubernetes-sigs.github.io/metrics-server/ --force-update
    helm repo add kedacore https://kedacore.github.io/charts --force-update
    helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
        --version "$KUBE_PROMETHEUS_STACK_VERSION" \
        --kube-context "$CONTEXT" -n monitoring --create-namespace \
        -f k8s/kube-prometheus-stack-values.yaml --wait --timeout 10m
    helm upgrade --install metrics-server metrics-server/metrics-server \
        --kube-context "$CONTEXT" -n kube-system -f k8s/metrics-server-values.yaml --wait
    if [[ "${KEDA:-0}" == 1 ]]; then
        helm upgrade --install keda kedacore/keda --version "$KEDA_VERSION" --kube-context "$CONTEXT" \
            -n keda --create-namespace -f k8s/keda-values.yaml --wait
    fi
}

up() {
    need docker kind skaffold helm kubectl || exit 1
    kind get clusters | grep -qx "$CLUSTER" || kind create cluster --config k8s/kind-cluster.yaml
    addons
    local extra=()
    [[ "${KEDA:-0}" == 1 ]] && extra+=(--set worker.keda.enabled=true)
    skaffold run --kube-context "$CONTEXT" "${extra[@]}"
    kubectl --context "$CONTEXT" -n "$NAMESPACE" rollout status deploy/stampede-api --timeout 5m
    helm test stampede --kube-context "$CONTEXT" -n "$NAMESPACE"
    echo "API:     kubectl --context $CONTEXT -n $NAMESPACE port-forward svc/stampede-api 8000:80"
    echo "Grafana: kubectl --context $CONTEXT -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80 (admin / stampede)"
}

down() {
    command -v kind >/dev/null || { echo "kind not installed: nothing to delete"; exit 0; }
    kind delete cluster --name "$CLUSTER"
}

e2e() {
    if ! need docker kind skaffold helm kubectl; then
        # Still run the suite: pytest reports each cluster test as skipped, with the reason.
        exec uv run pytest tests/e2e -ra
    fi
    up
    kubectl --context "$CONTEXT" -n "$NAMESPACE" port-forward svc/stampede-api 18000:80 >/dev/null &
    local api_pid=$!
    kubectl --context "$CONTEXT" -n monitoring port-forward svc/kube-prometheus-stack-prometheus 19090:9090 >/dev/null &
    local prom_pid=$!
    kubectl --context "$CONTEXT" -n monitoring port-forward svc/kube-prometheus-stack-grafana 13000:80 >/dev/null &
    local grafana_pid=$!
    trap 'kill $api_pid $prom_pid $grafana_pid 2>/dev/null || true' EXIT
    sleep 3
    local api_key
    api_key=$(kubectl --context "$CONTEXT" -n "$NAMESPACE" exec deploy/stampede-api -c api -- \
        python -m services.api.keys create --name e2e --scope admin --expires-in-days 1)
    STAMPEDE_CONTRACT_BASE_URL=http://127.0.0.1:18000 STAMPEDE_CONTRACT_API_KEY="$api_key" \
    STAMPEDE_E2E_CONTEXT="$CONTEXT" STAMPEDE_E2E_NAMESPACE="$NAMESPACE" \
    STAMPEDE_E2E_PROMETHEUS_URL=http://127.0.0.1:19090 \
    STAMPEDE_E2E_GRAFANA_URL=http://127.0.0.1:13000 \
        uv run pytest tests/contract tests/e2e -ra
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    e2e) e2e ;;
    *) echo "usage: $0 up|down|e2e" >&2; exit 2 ;;
esac
