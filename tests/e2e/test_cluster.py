"""The release in kind behaves as the chart promises (see conftest for when these run)."""

from __future__ import annotations

import json

import httpx

from devstack.release import chartfiles
from tests.support.cluster import Cluster, eventually

RELEASE = "stampede"


def test_api_hpa_reads_container_cpu(cluster: Cluster) -> None:
    def current() -> list[dict[str, object]]:
        hpa = cluster.get("hpa", f"{RELEASE}-api")
        metrics: list[dict[str, object]] = hpa["status"].get("currentMetrics") or []
        assert metrics, hpa["status"]
        assert metrics[0].get("containerResource"), hpa["status"]
        return metrics

    eventually(current)


def test_service_monitor_targets_are_up(cluster: Cluster) -> None:
    def targets() -> None:
        response = httpx.get(f"{cluster.prometheus_url}/api/v1/targets", params={"state": "active"})
        ours = [
            t
            for t in response.json()["data"]["activeTargets"]
            if t["labels"].get("namespace") == cluster.namespace
        ]
        services = {t["labels"].get("service") for t in ours}
        assert {f"{RELEASE}-api", f"{RELEASE}-cache", f"{RELEASE}-broker"} <= services, services
        down = [(t["scrapeUrl"], t["lastError"]) for t in ours if t["health"] != "up"]
        assert not down, down

    eventually(targets, timeout=240)


def test_dashboards_are_loaded_in_grafana(cluster: Cluster) -> None:
    wanted = {json.loads(text)["uid"] for text in chartfiles.expected_dashboards().values()}

    def loaded() -> None:
        response = httpx.get(
            f"{cluster.grafana_url}/api/search",
            params={"type": "dash-db"},
            auth=("admin", "stampede"),
        )
        assert response.status_code == 200
        assert wanted <= {d["uid"] for d in response.json()}

    eventually(loaded)


def test_deleted_api_pod_is_replaced_without_failed_requests(cluster: Cluster) -> None:
    """Requests through the Service from inside the cluster keep succeeding while a pod
    goes away (preStop delay + graceful drain + maxUnavailable 0)."""
    deployment = cluster.get("deployment", f"{RELEASE}-api")
    image = next(
        c["image"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "api"
    )
    replicas = deployment["status"]["readyReplicas"]
    pods = cluster.get("pods", "-l", "app.kubernetes.io/component=api")["items"]
    script = (
        "import time, urllib.request\n"
        "failed = ok = 0\n"
        "end = time.monotonic() + 40\n"
        "while time.monotonic() < end:\n"
        "    try:\n"
        f"        urllib.request.urlopen('http://{RELEASE}-api/livez', timeout=5).read(); ok += 1\n"
        "    except Exception as error:\n"
        "        failed += 1; print('FAILED', error, flush=True)\n"
        "    time.sleep(0.02)\n"
        "print('ok', ok, 'failed', failed)\n"
        "raise SystemExit(1 if failed or not ok else 0)\n"
    )
    cluster.kubectl(
        "run",
        "e2e-load",
        "--restart=Never",
        f"--image={image}",
        "--image-pull-policy=IfNotPresent",
        "--labels=app.kubernetes.io/component=e2e",
        "--command",
        "--",
        "python",
        "-c",
        script,
    )
    try:
        cluster.kubectl("wait", "--for=condition=Ready", "pod/e2e-load", "--timeout=60s")
        cluster.kubectl("delete", "pod", pods[0]["metadata"]["name"], "--wait=false")
        cluster.kubectl(
            "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/e2e-load", "--timeout=120s"
        )
        log = cluster.kubectl("logs", "e2e-load")
        assert "failed 0" in log, log
    finally:
        cluster.kubectl("delete", "pod", "e2e-load", "--ignore-not-found")

    def restored() -> None:
        ready = cluster.get("deployment", f"{RELEASE}-api")["status"].get("readyReplicas", 0)
        assert ready >= replicas

    eventually(restored)
