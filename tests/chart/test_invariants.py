"""What must hold in every scenario: stable selectors, hardened containers with resources
and probes, monitors that find their Services, autoscalers that find their targets."""

from __future__ import annotations

import base64
import re
from collections import defaultdict

import pytest
import yaml

from tests.support.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    Doc,
    Rendered,
    containers,
    pod_spec,
)

SELECTOR_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}
# The release is named like the chart, so objects are "<release>-<component>".
NAME = RELEASE


def selector_of(doc: Doc) -> dict[str, str]:
    spec = doc["spec"]
    if doc["kind"] == "Service":
        selector: dict[str, str] = spec["selector"]
        return selector
    if doc["kind"] == "NetworkPolicy":
        selector = spec["podSelector"]["matchLabels"]
        return selector
    selector = spec["selector"]["matchLabels"]
    return selector


def test_selectors_are_name_instance_component_only(scenario: Rendered) -> None:
    for doc in scenario.kinds(
        "Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy"
    ):
        selector = selector_of(doc)
        assert set(selector) == SELECTOR_KEYS, f"{doc['kind']}/{doc['metadata']['name']}"
        assert selector["app.kubernetes.io/instance"] == RELEASE


def test_selectors_are_the_same_in_every_scenario(rendered: dict[str, Rendered]) -> None:
    """A selector change would make `helm upgrade` fail on the immutable field."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for scenario in rendered.values():
        for doc in scenario.kinds("Deployment", "StatefulSet"):
            key = (doc["kind"], doc["metadata"]["name"])
            assert seen.setdefault(key, selector_of(doc)) == selector_of(doc), key
    assert len(seen) >= 5


def test_pod_templates_carry_their_selector_labels(scenario: Rendered) -> None:
    for doc in scenario.kinds("Deployment", "StatefulSet"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector_of(doc).items() <= labels.items()


def test_every_container_has_resources(scenario: Rendered) -> None:
    for doc in scenario.workloads():
        for _, container in containers(doc):
            resources = container.get("resources", {})
            where = (
                f"{scenario.scenario}: {doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            )
            assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), where
            assert "memory" in resources.get("limits", {}), where


def test_every_container_is_locked_down(scenario: Rendered) -> None:
    for doc in scenario.workloads():
        pod = pod_spec(doc)
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        assert pod.get("automountServiceAccountToken") is False
        assert not pod.get("hostNetwork")
        assert not pod.get("hostPID")
        for _, container in containers(doc):
            context = container.get("securityContext", {})
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert context.get("privileged") is False, where
            assert context.get("runAsUser", pod_context.get("runAsUser", 0)) > 0, where


def test_every_long_running_container_has_probes(scenario: Rendered) -> None:
    for doc in scenario.kinds("Deployment", "StatefulSet"):
        for role, container in containers(doc):
            if role == "init":
                continue
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


def test_api_and_its_sidecar_have_startup_probes(scenario: Rendered) -> None:
    api = scenario.get("Deployment", f"{NAME}-api")
    roles = {container["name"]: (role, container) for role, container in containers(api)}
    assert roles["pgbouncer"][0] == "sidecar"
    assert roles["pgbouncer"][1]["startupProbe"]
    assert roles["api"][1]["startupProbe"]["httpGet"]["path"] == "/livez"
    assert roles["api"][1]["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert roles["api"][1]["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_pods_restart_when_their_config_or_secrets_change(scenario: Rendered) -> None:
    config = f"{NAME}-config"
    for doc in scenario.kinds("Deployment"):
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        assert "checksum/secret" in annotations, doc["metadata"]["name"]
        uses_config = any(
            source.get("configMapRef", {}).get("name") == config
            for _, container in containers(doc)
            for source in container.get("envFrom", [])
        )
        if uses_config:
            assert "checksum/config" in annotations, doc["metadata"]["name"]
    api = scenario.get("Deployment", f"{NAME}-api")
    assert "checksum/config" in api["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/pgbouncer" in api["spec"]["template"]["metadata"]["annotations"]


def test_no_floating_or_bitnami_images(scenario: Rendered) -> None:
    for doc in scenario.workloads():
        for _, container in containers(doc):
            image = container["image"]
            assert "bitnami" not in image
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), image
            assert not image.endswith((":latest", ":7", ":15")), image


def test_service_monitors_find_services_and_ports(scenario: Rendered) -> None:
    monitors = scenario.kinds("ServiceMonitor")
    if scenario.values["metrics"]["serviceMonitor"]["enabled"] is False:
        assert not monitors
        return
    assert monitors
    release_labels = scenario.values["metrics"]["serviceMonitor"]["labels"]
    for monitor in monitors:
        assert release_labels.items() <= monitor["metadata"]["labels"].items()
        wanted = monitor["spec"]["selector"]["matchLabels"]
        services = [
            s
            for s in scenario.kinds("Service")
            if wanted.items() <= s["metadata"]["labels"].items()
        ]
        assert len(services) == 1, monitor["metadata"]["name"]
        port_names = {port["name"] for port in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_service_ports_reach_named_container_ports(scenario: Rendered) -> None:
    for service in scenario.kinds("Service"):
        selector = service["spec"]["selector"]
        pods = [
            w
            for w in scenario.kinds("Deployment", "StatefulSet")
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, service["metadata"]["name"]
        named = {
            port["name"]
            for _, container in containers(pods[0])
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named, (service["metadata"]["name"], port)


def test_autoscalers_target_what_exists(scenario: Rendered) -> None:
    for hpa in scenario.kinds("HorizontalPodAutoscaler"):
        target = scenario.get(
            hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]
        )
        assert "replicas" not in target["spec"], "the HPA owns replicas"
        names = {c["name"] for _, c in containers(target)}
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "ContainerResource":
                assert metric["containerResource"]["container"] in names
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for scaled in scenario.kinds("ScaledObject"):
        target = scenario.get("Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"]
        for trigger in scaled["spec"]["triggers"]:
            if ref := trigger.get("authenticationRef"):
                scenario.get("TriggerAuthentication", ref["name"])


def test_api_scales_on_its_own_container_cpu(scenario: Rendered) -> None:
    hpa = scenario.find("HorizontalPodAutoscaler", f"{NAME}-api")
    if not scenario.values["api"]["autoscaling"]["enabled"]:
        assert hpa is None
        return
    assert hpa is not None
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "ContainerResource"
    assert metric["containerResource"] == {
        "name": "cpu",
        "container": "api",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    assert {"scaleUp", "scaleDown"} <= hpa["spec"]["behavior"].keys()


def test_never_an_hpa_and_keda_for_the_same_deployment(scenario: Rendered) -> None:
    scaled: defaultdict[str, list[str]] = defaultdict(list)
    for hpa in scenario.kinds("HorizontalPodAutoscaler"):
        scaled[hpa["spec"]["scaleTargetRef"]["name"]].append("hpa")
    for obj in scenario.kinds("ScaledObject"):
        scaled[obj["spec"]["scaleTargetRef"]["name"]].append("keda")
    assert all(len(kinds) == 1 for kinds in scaled.values()), scaled
    keda = scenario.values["worker"]["keda"]["enabled"]
    assert (scaled.get(f"{NAME}-worker") == ["keda"]) == keda


def test_disruption_budgets_select_a_workload(scenario: Rendered) -> None:
    for pdb in scenario.kinds("PodDisruptionBudget"):
        wanted = selector_of(pdb)
        assert any(selector_of(w) == wanted for w in scenario.kinds("Deployment"))


def test_env_references_resolve(scenario: Rendered) -> None:
    """Every secretKeyRef/configMapRef names a rendered object (with that key) or an
    existingSecret the scenario says the user provides."""
    existing = set(re.findall(r"existingSecret: (\S+)", str_values(scenario)))
    for doc in scenario.workloads():
        for _, container in containers(doc):
            for source in container.get("envFrom", []):
                scenario.get("ConfigMap", source["configMapRef"]["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is None or ref["name"] in existing:
                    continue
                secret = scenario.get("Secret", ref["name"])
                assert ref["key"] in secret["data"], (doc["metadata"]["name"], ref)


def str_values(scenario: Rendered) -> str:
    return yaml.safe_dump(scenario.values)


def test_api_reaches_postgres_through_its_pgbouncer(scenario: Rendered) -> None:
    env = container_env(scenario.get("Deployment", f"{NAME}-api"), "api")
    assert re.fullmatch(
        r"postgresql\+asyncpg://\w+:\$\(DATABASE_PASSWORD\)@127\.0\.0\.1:6432/\w+",
        env["STAMPEDE_DB__URL"],
    )
    ini = scenario.get("ConfigMap", f"{NAME}-pgbouncer")["data"]["pgbouncer.ini"]
    assert "pool_mode = transaction" in ini
    assert "auth_type = scram-sha-256" in ini


def test_migrations_talk_straight_to_postgres(scenario: Rendered) -> None:
    [job] = scenario.kinds("Job")
    env = container_env(job, "migrations")
    external = scenario.values["externalDatabase"]
    host = (
        f"{NAME}-postgresql:5432"
        if scenario.values["postgresql"]["enabled"]
        else f"{external['host']}:{external['port']}"
    )
    assert f"@{host}/" in env["STAMPEDE_DB__MIGRATION_URL"]
    assert "6432" not in env["STAMPEDE_DB__MIGRATION_URL"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "upgrade"


def test_migrations_run_before_new_api_pods_and_after_their_database(scenario: Rendered) -> None:
    """pre-install with an external database (it exists before the release); post-install
    with the in-chart one (created by the release). What each hook needs at its phase is
    checked in test_hooks."""
    [job] = scenario.kinds("Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    first = "post-install" if scenario.values["postgresql"]["enabled"] else "pre-install"
    assert hooks == [first, "pre-upgrade"]


@pytest.mark.parametrize(
    ("role", "expected", "forbidden"),
    [
        ("cache", ["--maxmemory-policy", "allkeys-lru", "--appendonly", "no", "--save", ""], []),
        ("broker", ["--maxmemory-policy", "noeviction", "--appendonly", "yes"], ["allkeys-lru"]),
    ],
)
def test_redis_roles(
    scenario: Rendered, role: str, expected: list[str], forbidden: list[str]
) -> None:
    redis = scenario.get("StatefulSet", f"{NAME}-{role}")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    for flag, value in zip(expected[::2], expected[1::2], strict=True):
        assert args[args.index(flag) + 1] == value
    assert not set(forbidden) & set(args)
    claims = redis["spec"].get("volumeClaimTemplates", [])
    persistent = role == "broker" and scenario.values["broker"]["persistence"]["enabled"]
    assert bool(claims) == persistent


def test_exporters_are_the_local_stacks_software(rendered: dict[str, Rendered]) -> None:
    default = rendered["keda"]  # the scenario with the PgBouncer exporter on
    api = default.get("Deployment", f"{NAME}-api")
    images = {c["name"]: c["image"] for _, c in containers(api)}
    assert images["pgbouncer-exporter"].startswith("stampede-pgbouncer-exporter:")
    assert images["pgbouncer"].startswith("stampede-pgbouncer:")
    cache = default.get("StatefulSet", f"{NAME}-cache")
    exporter = {c["name"]: c["image"] for _, c in containers(cache)}["redis-exporter"]
    assert exporter.endswith("oliver006/redis_exporter:v1.45.0")


def test_network_policies_cover_every_pod(scenario: Rendered) -> None:
    policies = scenario.kinds("NetworkPolicy")
    if not scenario.values["networkPolicy"]["enabled"]:
        assert not policies
        return
    covered = [selector_of(p) for p in policies]
    for doc in scenario.kinds("Deployment", "StatefulSet"):
        assert selector_of(doc) in covered, doc["metadata"]["name"]


def test_prometheus_rule_carries_release_labels(scenario: Rendered) -> None:
    rules = scenario.kinds("PrometheusRule")
    if not scenario.values["metrics"]["prometheusRule"]["enabled"]:
        assert not rules
        return
    [rule] = rules
    assert (
        scenario.values["metrics"]["prometheusRule"]["labels"].items()
        <= rule["metadata"]["labels"].items()
    )
    # Verbatim: the rules file the local Prometheus loads and promtool unit-tests.
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.rules.yaml").read_text())


def test_helm_test_hook_checks_readiness_and_a_database_read(scenario: Rendered) -> None:
    [pod] = scenario.kinds("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    urls = pod["spec"]["containers"][0]["command"][3:]
    api = f"http://{NAME}-api:80"
    assert urls == [f"{api}/readyz", f"{api}/products?limit=1"]


def test_api_key_hmac_key_comes_from_a_secret(scenario: Rendered) -> None:
    """Never a plain value in the pod spec: the chart's generated Secret (kept across
    upgrades) or the user's existingSecret."""
    [api] = [
        c for _, c in containers(scenario.get("Deployment", f"{NAME}-api")) if c["name"] == "api"
    ]
    [env] = [e for e in api["env"] if e["name"] == "STAMPEDE_AUTH__HMAC_KEY"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "api-key-hmac-key"
    existing = scenario.values["api"]["auth"]["existingSecret"]
    assert ref["name"] == (existing or NAME)
    if not existing:
        value = scenario.get("Secret", NAME)["data"]["api-key-hmac-key"]
        assert len(base64.b64decode(value)) >= 32


def container_env(doc: Doc, name: str) -> dict[str, str]:
    [container] = [c for _, c in containers(doc) if c["name"] == name]
    return {env["name"]: env.get("value", "") for env in container.get("env", [])}


def test_topology_spread_selects_the_pods_own_revision(scenario: Rendered) -> None:
    """Each constraint counts the workload's own pods (never a hard-coded release name)
    and, with pod-template-hash, only those of the same revision, so a rolling update
    spreads its new pods instead of being skewed by the old ones."""
    for doc in scenario.kinds("Deployment"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        for constraint in pod_spec(doc).get("topologySpreadConstraints", []):
            where = f"{doc['metadata']['name']} {constraint['topologyKey']}"
            selected = constraint["labelSelector"]["matchLabels"]
            assert selected.items() <= labels.items(), where
            assert constraint.get("matchLabelKeys") == ["pod-template-hash"], where


def test_no_secret_is_expanded_into_a_command_line(scenario: Rendered) -> None:
    """The kubelet expands $(VAR) into argv, which every process on the node can read in
    /proc: a Secret-sourced variable must reach its process through the environment or a
    file instead."""
    for doc in scenario.workloads():
        for _, container in containers(doc):
            secret_vars = {
                env["name"]
                for env in container.get("env", [])
                if "secretKeyRef" in env.get("valueFrom", {})
            }
            argv = " ".join(container.get("command", []) + container.get("args", []))
            leaked = sorted(name for name in secret_vars if f"$({name})" in argv)
            assert not leaked, f"{doc['metadata']['name']}/{container['name']}: {leaked}"


HELM_DEFAULT_TIMEOUT_S = 300


def test_migration_job_ends_before_helm_stops_waiting(scenario: Rendered) -> None:
    """helm waits for a hook Job up to --timeout (5 minutes by default); a Job that
    outlives the wait fails the release while it keeps running."""
    [job] = scenario.kinds("Job")
    assert job["spec"]["activeDeadlineSeconds"] < HELM_DEFAULT_TIMEOUT_S
    [wait] = pod_spec(job)["initContainers"]
    assert int(wait["command"][-1]) < job["spec"]["activeDeadlineSeconds"]
