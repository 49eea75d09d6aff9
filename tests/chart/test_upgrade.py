"""What ``helm upgrade`` renders over a release that runs: ``helm template
--dry-run=server`` against an API server holding the release's live objects
(``tests.support.lookup_api``), so the chart's ``lookup``s find them.

The operator owns the api sidecars' pool size once it runs: an upgrade renders the live
pool file back, so Helm's patch changes nothing. Generated passwords are kept, and the
operator's Postgres Secret carries the release's own."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from tests.support.chart import CHART, NAMESPACE, RELEASE, Doc, Helm
from tests.support.lookup_api import LookupApi, serving

POOL = f"{RELEASE}-pgbouncer-pool"
POOL_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{POOL}"
# The defaults' pool file before the operator's first reconcile (test_operator works it out).
INITIAL = "default_pool_size = 12\nmax_db_connections = 12\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def upgrade_render(
    helm: Helm, live: Iterable[Doc], workdir: Path
) -> tuple[dict[str, Doc], LookupApi]:
    """The default values rendered as an upgrade over ``live`` objects."""
    plain = helm.template()
    api = LookupApi({(doc["apiVersion"], doc["kind"]) for doc in plain})
    for doc in live:
        api.add(NAMESPACE, doc, RELEASE)
    with serving(api, workdir) as kubeconfig:
        result = helm.run(
            *("template", RELEASE, str(CHART), "--namespace", NAMESPACE),
            *("--dry-run=server", "--disable-openapi-validation", "--kubeconfig", str(kubeconfig)),
        )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in docs}, api


def pool_map(text: str) -> Doc:
    return {"kind": "ConfigMap", "metadata": {"name": POOL}, "data": {"pool.ini": text}}


def test_an_upgrade_keeps_the_pool_size_the_operator_set(helm: Helm, tmp_path: Path) -> None:
    live = "default_pool_size = 5\nmax_db_connections = 5\n"
    rendered, api = upgrade_render(helm, [pool_map(live)], tmp_path)
    assert POOL_PATH in [path.split("?")[0] for path in api.requests]
    assert rendered[f"ConfigMap/{POOL}"]["data"] == {"pool.ini": live}


def test_a_first_install_starts_from_the_safe_size(helm: Helm, tmp_path: Path) -> None:
    rendered, api = upgrade_render(helm, [], tmp_path)
    assert POOL_PATH in [path.split("?")[0] for path in api.requests]
    assert rendered[f"ConfigMap/{POOL}"]["data"] == {"pool.ini": INITIAL}


def test_a_pool_map_without_its_file_gets_the_safe_size_again(helm: Helm, tmp_path: Path) -> None:
    emptied: Doc = {"kind": "ConfigMap", "metadata": {"name": POOL}, "data": {}}
    rendered, _ = upgrade_render(helm, [emptied], tmp_path)
    assert rendered[f"ConfigMap/{POOL}"]["data"] == {"pool.ini": INITIAL}


def test_an_upgrade_keeps_generated_passwords_and_the_operators_copy(
    helm: Helm, tmp_path: Path
) -> None:
    release_secret = {
        "kind": "Secret",
        "metadata": {"name": RELEASE},
        "data": {"postgres-password": b64("live-db-pw"), "api-key-hmac-key": b64("k" * 32)},
    }
    admin_secret = {
        "kind": "Secret",
        "metadata": {"name": f"{RELEASE}-pgbouncer-admin"},
        "data": {"username": b64("stampede_operator"), "password": b64("live-admin-pw")},
    }
    rendered, _ = upgrade_render(helm, [release_secret, admin_secret], tmp_path)
    assert rendered[f"Secret/{RELEASE}"]["data"]["postgres-password"] == b64("live-db-pw")
    operator = rendered[f"Secret/{RELEASE}-operator-postgres"]["data"]
    assert operator["password"] == b64("live-db-pw")
    admin = rendered[f"Secret/{RELEASE}-pgbouncer-admin"]["data"]
    assert admin == {"username": b64("stampede_operator"), "password": b64("live-admin-pw")}


@pytest.mark.parametrize("operator", ["true", "false"])
def test_a_plain_render_never_asks_a_cluster(helm: Helm, operator: str) -> None:
    """``helm template`` (client) has no cluster: lookups find nothing, the pool file is
    the safe size (there is one only with the operator)."""
    docs = helm.template(set_values={"operator.enabled": operator})
    pools = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == POOL]
    assert [d["data"] for d in pools] == ([{"pool.ini": INITIAL}] if operator == "true" else [])
