"""The ConnectionBudget operator as the chart installs it: its pod, its namespaced RBAC
(exactly the calls the operator's code makes), the ConnectionBudget rendered from values
and pointing at what the release renders, the api sidecars' pool file, and the network
paths between them."""

from __future__ import annotations

import base64
import configparser
import math
import re
from typing import Any

import pytest

from services.operator.rbac import REQUIRED_RULES
from tests.support.chart import (
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    Doc,
    Helm,
    Rendered,
    RenderError,
    containers,
    merged_values,
    pod_spec,
    scenario_file,
)

NAME = RELEASE
OPERATOR = f"{NAME}-operator"
POOL_CONFIGMAP = f"{NAME}-pgbouncer-pool"
POOL_DIR = "/etc/pgbouncer-pool"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def operator_on(scenario: Rendered) -> bool:
    on: bool = scenario.values["operator"]["enabled"]
    return on


def budget_of(scenario: Rendered) -> Doc:
    [budget] = scenario.kinds("ConnectionBudget")
    return budget


def container(doc: Doc, name: str) -> Doc:
    [found] = [c for _, c in containers(doc) if c["name"] == name]
    return found


def pgbouncer_ini(scenario: Rendered) -> str:
    ini: str = scenario.get("ConfigMap", f"{NAME}-pgbouncer")["data"]["pgbouncer.ini"]
    return ini


def pool_settings(text: str) -> dict[str, int]:
    return {
        key.strip(): int(value)
        for key, value in (line.split("=", 1) for line in text.splitlines() if "=" in line)
    }


def existing_secrets(scenario: Rendered) -> set[str]:
    """Secrets the scenario says its user provides."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "existingSecret" and value:
                    found.add(value)
                walk(value)

    walk(scenario.values)
    return found


def secret_keys(scenario: Rendered, name: str) -> set[str] | None:
    """The keys of a rendered Secret; None for a Secret the user provides."""
    if name in existing_secrets(scenario):
        return None
    return set(scenario.get("Secret", name)["data"])


OPERATOR_SCENARIOS = [name for name in SCENARIOS if merged_values(name)["operator"]["enabled"]]


@pytest.fixture(params=OPERATOR_SCENARIOS)
def with_operator(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    """Each scenario that runs the operator (the others: test_without_the_operator_...)."""
    scenario: Rendered = rendered[request.param]
    return scenario


# ---- the operator's pod -----------------------------------------------------------------


def test_operator_runs_once_from_the_app_image(with_operator: Rendered) -> None:
    deployment = with_operator.get("Deployment", OPERATOR)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # Never an old and a new operator writing pool sizes at once.
    assert spec["strategy"] == {"type": "Recreate"}
    operator = container(deployment, "operator")
    api = container(with_operator.get("Deployment", f"{NAME}-api"), "api")
    assert operator["image"] == api["image"]
    assert operator["command"] == ["python", "-m", "services.operator"]
    ports = {port["name"]: port["containerPort"] for port in operator["ports"]}
    assert ports == {"health": 8080, "metrics": 9808}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e for e in operator["env"]}
    assert env["STAMPEDE_OPERATOR_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["STAMPEDE_OPERATOR_METRICS_PORT"]["value"] == "9808"
    assert env["STAMPEDE_OPERATOR_HEALTH_PORT"]["value"] == "8080"
    # Only the release's own budget, so two releases in one namespace stay apart.
    budget = with_operator.get("ConnectionBudget", NAME)
    assert env["STAMPEDE_OPERATOR_BUDGET_NAME"]["value"] == budget["metadata"]["name"]


def test_operator_metrics_are_scraped_like_the_others(with_operator: Rendered) -> None:
    service = with_operator.get("Service", OPERATOR)
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9808, "targetPort": "metrics"}]
    if with_operator.values["metrics"]["serviceMonitor"]["enabled"] is not False:
        monitor = with_operator.get("ServiceMonitor", OPERATOR)
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def test_only_the_operator_pod_gets_a_kubernetes_api_token(scenario: Rendered) -> None:
    """Every pod opts out of automounting; the operator alone projects its own account's
    token (bound to the pod, rotated), and no other pod runs as that account."""
    for doc in scenario.workloads():
        spec = pod_spec(doc)
        assert spec.get("automountServiceAccountToken") is False, doc["metadata"]["name"]
        tokens = [
            volume
            for volume in spec.get("volumes", [])
            for source in volume.get("projected", {}).get("sources", [])
            if "serviceAccountToken" in source
        ]
        if doc["metadata"]["name"] == OPERATOR:
            assert spec["serviceAccountName"] == OPERATOR
            [volume] = tokens
            mounts = container(doc, "operator")["volumeMounts"]
            [mount] = [m for m in mounts if m["name"] == volume["name"]]
            assert mount == {"name": volume["name"], "mountPath": TOKEN_DIR, "readOnly": True}
        else:
            assert not tokens, doc["metadata"]["name"]
            assert spec.get("serviceAccountName") != OPERATOR, doc["metadata"]["name"]
    account = scenario.find("ServiceAccount", OPERATOR)
    assert (account is not None) == operator_on(scenario)
    if account is not None:
        assert account["automountServiceAccountToken"] is False


# ---- RBAC -------------------------------------------------------------------------------


def triples(rules: Any) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_is_namespaced_and_exactly_what_the_operator_calls(with_operator: Rendered) -> None:
    assert not with_operator.kinds("ClusterRole", "ClusterRoleBinding")
    [role] = with_operator.kinds("Role")
    rules = role["rules"]
    assert triples(rules) == triples(REQUIRED_RULES)
    assert not any("*" in value for rule in rules for key in rule for value in rule[key])
    [binding] = with_operator.kinds("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}
    ]


def test_rbac_names_the_objects_where_kubernetes_allows_it(with_operator: Rendered) -> None:
    """Secrets: only the two the ConnectionBudget names; ConfigMaps: get and patch only
    the pool's (list, watch and create cannot be narrowed by name)."""
    [role] = with_operator.kinds("Role")
    spec = budget_of(with_operator)["spec"]
    [pooled] = spec["pooled"]
    named = {
        (rule["resources"][0], verb): set(rule.get("resourceNames", []))
        for rule in role["rules"]
        for verb in rule["verbs"]
    }
    secrets = {spec["postgres"]["secretRef"]["name"], pooled["pgbouncer"]["adminSecretRef"]["name"]}
    assert named[("secrets", "get")] == secrets
    for verb in ("get", "patch"):
        assert named[("configmaps", verb)] == {pooled["pgbouncer"]["configMap"]}


# ---- the ConnectionBudget ---------------------------------------------------------------


def test_connection_budget_points_at_what_the_release_renders(with_operator: Rendered) -> None:
    values = with_operator.values
    budget = budget_of(with_operator)
    assert budget["metadata"]["name"] == NAME
    spec = budget["spec"]
    assert spec["reserve"] == values["connectionBudget"]["reserve"]
    expected_max = (
        "auto" if values["postgresql"]["enabled"] else values["externalDatabase"]["maxConnections"]
    )
    assert spec["postgres"]["maxConnections"] == expected_max
    postgres_keys = secret_keys(with_operator, spec["postgres"]["secretRef"]["name"])
    assert (
        postgres_keys is None
        or {"host", "port", "database", "username", "password"} <= postgres_keys
    )

    [pooled] = spec["pooled"]
    api = with_operator.get("Deployment", pooled["deployment"])
    sidecar = container(api, "pgbouncer")
    assert [p["containerPort"] for p in sidecar["ports"]] == [pooled["pgbouncer"]["port"]]
    hpa = pooled.get("horizontalPodAutoscaler")
    assert (hpa is not None) == values["api"]["autoscaling"]["enabled"]
    if hpa is not None:
        target = with_operator.get("HorizontalPodAutoscaler", hpa)["spec"]["scaleTargetRef"]
        assert target["name"] == pooled["deployment"]
    db_user = values["postgresql" if values["postgresql"]["enabled"] else "externalDatabase"][
        "username"
    ]
    assert pooled["role"] == db_user
    assert (pooled["minPoolSize"], pooled["maxPoolSize"]) == (2, 20)
    with_operator.get("ConfigMap", pooled["pgbouncer"]["configMap"])
    admin = pooled["pgbouncer"]["adminSecretRef"]["name"]
    admin_keys = secret_keys(with_operator, admin)
    assert admin_keys is None or admin_keys == {"username", "password"}
    if admin_keys is not None:
        username = base64.b64decode(with_operator.get("Secret", admin)["data"]["username"]).decode()
        assert f"admin_users = {username}\n" in pgbouncer_ini(with_operator)

    fixed = {consumer["name"]: consumer for consumer in spec["fixed"]}
    assert set(fixed) == {"worker", "relay", "migrations"}
    assert fixed["worker"]["connectionsPerPod"] == values["worker"]["dbConnectionsPerPod"]
    assert fixed["relay"]["connectionsPerPod"] == values["relay"]["dbConnectionsPerPod"]
    assert fixed["migrations"] == {"name": "migrations", "replicas": 1, "connectionsPerPod": 1}
    for name in ("worker", "relay"):
        with_operator.get("Deployment", fixed[name]["deployment"])
    worker_hpa = fixed["worker"]["horizontalPodAutoscaler"]
    if values["worker"]["keda"]["enabled"]:
        # KEDA names the HPA it creates for a ScaledObject keda-hpa-<name>.
        scaled = with_operator.get("ScaledObject", worker_hpa.removeprefix("keda-hpa-"))
        assert scaled["spec"]["scaleTargetRef"]["name"] == fixed["worker"]["deployment"]
    else:
        with_operator.get("HorizontalPodAutoscaler", worker_hpa)


def test_fixed_and_pooled_consumers_follow_the_values(helm: Helm) -> None:
    docs = helm.template(
        set_values={
            "operator.api.minPoolSize": "3",
            "operator.api.maxPoolSize": "15",
            "operator.api.weight": "2",
            "operator.api.maxSurge": "50%",
            "operator.maxConnections": "400",
            "api.autoscaling.enabled": "false",
            "worker.enabled": "false",
            "migrations.dbConnections": "2",
        }
    )
    [budget] = [doc for doc in docs if doc["kind"] == "ConnectionBudget"]
    [pooled] = budget["spec"]["pooled"]
    assert budget["spec"]["postgres"]["maxConnections"] == 400
    assert (pooled["minPoolSize"], pooled["maxPoolSize"], pooled["weight"]) == (3, 15, 2)
    assert pooled["maxSurge"] == "50%"
    assert "horizontalPodAutoscaler" not in pooled
    assert [c["name"] for c in budget["spec"]["fixed"]] == ["relay", "migrations"]
    assert budget["spec"]["fixed"][1]["connectionsPerPod"] == 2


# ---- the api sidecar's pool file --------------------------------------------------------


def expected_initial_pool(values: dict[str, Any]) -> int:
    """Largest pool within [min, max] that keeps every api pod at the HPA's maximum plus
    the Deployment's 25% surge, the fixed consumers and the reserve within the budget."""
    api = values["api"]
    replicas = (
        api["autoscaling"]["maxReplicas"] if api["autoscaling"]["enabled"] else api["replicas"]
    )
    pods = replicas + math.ceil(replicas * 25 / 100)
    database = (
        values["postgresql"] if values["postgresql"]["enabled"] else values["externalDatabase"]
    )
    worker = values["worker"]
    workers = 0
    if worker["enabled"]:
        if worker["keda"]["enabled"]:
            workers = worker["keda"]["maxReplicaCount"]
        elif worker["autoscaling"]["enabled"]:
            workers = worker["autoscaling"]["maxReplicas"]
        else:
            workers = worker["replicas"]
    relay = values["relay"]
    fixed = workers * worker["dbConnectionsPerPod"]
    fixed += relay["replicas"] * relay["dbConnectionsPerPod"] if relay["enabled"] else 0
    fixed += values["migrations"]["dbConnections"] if values["migrations"]["enabled"] else 0
    capacity = database["maxConnections"]
    setting = str(values["operator"]["maxConnections"])
    if setting.isdigit():
        capacity = int(setting)
    elif setting == "auto" or values["postgresql"]["enabled"]:
        capacity -= 3  # Postgres' superuser slots, which "auto" leaves out
    left = capacity - fixed - values["connectionBudget"]["reserve"]
    limits = values["operator"]["api"]
    return min(max(left // pods, limits["minPoolSize"]), limits["maxPoolSize"])


def test_pool_file_starts_safe_at_full_scale(with_operator: Rendered) -> None:
    pool = with_operator.get("ConfigMap", POOL_CONFIGMAP)
    settings = pool_settings(pool["data"]["pool.ini"])
    size = expected_initial_pool(dict(with_operator.values))
    assert settings == {"default_pool_size": size, "max_db_connections": size}
    # Helm never owned the value: an upgrade renders the live one back (lookup), and a
    # new pool size is pushed to the pods, never a restart.
    api = with_operator.get("Deployment", f"{NAME}-api")
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert not any("pool" in key for key in annotations)


def test_sidecar_includes_the_pool_file_last_and_sets_no_pool_itself(
    with_operator: Rendered,
) -> None:
    ini = pgbouncer_ini(with_operator)
    section = ini.split("[pgbouncer]", 1)[1]
    lines = [
        line.strip()
        for line in section.splitlines()
        if line.strip() and not line.strip().startswith(";")
    ]
    assert lines[-1] == f"%include {POOL_DIR}/pool.ini"
    assert not any(line.startswith(("default_pool_size", "max_db_connections")) for line in lines)
    admin = with_operator.values["operator"]["pgbouncerAdmin"]["username"]
    assert f"admin_users = {admin}" in lines

    api = with_operator.get("Deployment", f"{NAME}-api")
    sidecar = container(api, "pgbouncer")
    [mount] = [m for m in sidecar["volumeMounts"] if m["mountPath"] == POOL_DIR]
    # A directory mount: a subPath mount would never see the operator's writes.
    assert "subPath" not in mount
    [volume] = [v for v in pod_spec(api)["volumes"] if v["name"] == mount["name"]]
    assert volume == {"name": mount["name"], "configMap": {"name": POOL_CONFIGMAP}}

    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in sidecar["env"]}
    [pooled] = budget_of(with_operator)["spec"]["pooled"]
    admin_secret = pooled["pgbouncer"]["adminSecretRef"]["name"]
    assert env["PGBOUNCER_ADMIN_USER"] == {"name": admin_secret, "key": "username"}
    assert env["PGBOUNCER_ADMIN_PASSWORD"] == {"name": admin_secret, "key": "password"}
    start = with_operator.get("ConfigMap", f"{NAME}-pgbouncer")["data"]["start.sh"]
    assert '"$(quote "$PGBOUNCER_ADMIN_USER")" "$(quote "$PGBOUNCER_ADMIN_PASSWORD")"' in start
    # The file-descriptor check allows for the largest pool the operator may set.
    needed = re.search(r"needed=(\d+)", start)
    assert needed is not None
    assert int(needed[1]) == with_operator.values["pgbouncer"]["maxClientConn"] + 20 + 16


def test_without_the_operator_the_sidecar_is_static(rendered: dict[str, Rendered]) -> None:
    minimal = rendered["minimal"]
    assert not operator_on(minimal)
    assert not [doc for doc in minimal.docs if "operator" in doc["metadata"]["name"]]
    assert not minimal.kinds("ConnectionBudget", "Role", "RoleBinding")
    assert minimal.find("ConfigMap", POOL_CONFIGMAP) is None
    parser = configparser.ConfigParser(comment_prefixes=(";",))
    parser.read_string(pgbouncer_ini(minimal))
    pool = minimal.values["pgbouncer"]["defaultPoolSize"]
    assert parser["pgbouncer"]["default_pool_size"] == str(pool)
    assert parser["pgbouncer"]["max_db_connections"] == str(pool)
    assert "admin_users" not in parser["pgbouncer"]
    assert "%include" not in pgbouncer_ini(minimal)
    sidecar = container(minimal.get("Deployment", f"{NAME}-api"), "pgbouncer")
    assert {e["name"] for e in sidecar["env"]} == {"PGBOUNCER_USER", "PGBOUNCER_PASSWORD"}


FIXED_SECRETS = {
    "postgresql.password": "pg-password",
    "api.auth.hmacKey": "k" * 32,
    "cache.auth.password": "cache-password",
    "broker.auth.password": "broker-password",
    "operator.pgbouncerAdmin.password": "admin-password",
}


def test_a_new_budget_changes_the_pool_file_not_the_api_pods(helm: Helm) -> None:
    def render(max_connections: str) -> tuple[Doc, Doc]:
        docs = helm.template(
            set_values={**FIXED_SECRETS, "postgresql.maxConnections": max_connections}
        )
        by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        return by_name[("ConfigMap", POOL_CONFIGMAP)], by_name[("Deployment", f"{NAME}-api")]

    small_pool, small_api = render("150")
    large_pool, large_api = render("300")
    assert small_pool["data"] != large_pool["data"]
    assert small_api == large_api


def test_the_operators_postgres_secret_carries_the_releases_password(helm: Helm) -> None:
    """Generated once per render: the release's Secret and the operator's agree on a
    fresh install, without a password in the values."""
    docs = helm.template()
    secrets = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "Secret"}
    operator = secrets[f"{NAME}-operator-postgres"]
    assert operator["password"] == secrets[NAME]["postgres-password"]
    decoded = {key: base64.b64decode(value).decode() for key, value in operator.items()}
    assert decoded["host"] == f"{NAME}-postgresql"
    assert (decoded["port"], decoded["database"], decoded["username"]) == (
        "5432",
        "stampede",
        "stampede",
    )
    assert decoded["sslmode"] == "disable"
    assert len(decoded["password"]) == 32


def test_an_existing_database_secret_needs_one_for_the_operator(helm: Helm) -> None:
    """The chart cannot copy a Secret it does not own: it says so instead of guessing."""
    with pytest.raises(RenderError, match=r"operator\.postgres\.existingSecret"):
        helm.template([scenario_file("external-db")], {"operator.postgres.existingSecret": ""})
    helm.template(
        [scenario_file("external-db")],
        {"operator.postgres.existingSecret": "", "operator.enabled": "false"},
    )


# ---- network paths ----------------------------------------------------------------------


def from_components(rule: Doc) -> set[str]:
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in rule.get("from", rule.get("to", []))
        if "podSelector" in peer
    }


def sidecar_ingress(policy: Doc) -> list[Doc]:
    return [
        rule
        for rule in policy["spec"]["ingress"]
        if any(port["port"] in ("pgbouncer", 6432) for port in rule["ports"])
    ]


def test_only_the_operator_reaches_the_sidecar_port(with_operator: Rendered) -> None:
    [rule] = sidecar_ingress(with_operator.get("NetworkPolicy", f"{NAME}-api"))
    assert rule["ports"] == [{"port": "pgbouncer", "protocol": "TCP"}]
    [peer] = rule["from"]
    assert peer == {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "stampede",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "operator",
            }
        }
    }


def test_without_the_operator_no_pod_reaches_the_sidecar_port(helm: Helm) -> None:
    docs = helm.template(set_values={"operator.enabled": "false"})
    [policy] = [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == f"{NAME}-api"
    ]
    assert not sidecar_ingress(policy)


def test_operator_egress_is_dns_postgres_the_api_server_and_the_sidecars(
    with_operator: Rendered,
) -> None:
    policy = with_operator.get("NetworkPolicy", OPERATOR)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress = policy["spec"]["egress"]
    assert all(rule.get("ports") for rule in egress), "an egress rule without ports"
    ports = {
        (port["port"], port["protocol"], frozenset(from_components(rule)))
        for rule in egress
        for port in rule["ports"]
    }
    values = with_operator.values
    postgres = (
        (5432, "TCP", frozenset({"postgresql"}))
        if values["postgresql"]["enabled"]
        else (values["externalDatabase"]["port"], "TCP", frozenset())
    )
    assert ports == {
        (53, "UDP", frozenset()),
        (53, "TCP", frozenset()),
        postgres,
        (443, "TCP", frozenset()),
        (6443, "TCP", frozenset()),
        (values["pgbouncer"]["port"], "TCP", frozenset({"api"})),
    }
    [ingress] = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    if values["postgresql"]["enabled"]:
        database = with_operator.get("NetworkPolicy", f"{NAME}-postgresql")
        [rule] = database["spec"]["ingress"]
        assert "operator" in from_components(rule)
