"""The chart's ci/ scenarios as the pod tests install them, with what lies outside them.

A scenario is installed with its own values file, plus only what points the release at
this machine: the SMTP server the test runs (``smtp.*``). What a real cluster would hold
before the install is made here: the production scenario's ``existingSecret``s, and its
external database, a stand-in Postgres pod (TLS on: the scenario says
``sslMode: require``) answering at ``externalDatabase.host``, and the operator's Secrets.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from tests.support.kubelet.objects import Doc

EXTERNAL_DB_PASSWORD = "external-db-" + "pw"  # URL-safe, as the chart requires


def secret(name: str, data: dict[str, str]) -> Doc:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


@dataclass(frozen=True)
class Smtp:
    host: str  # the name the pods use
    port: int


@dataclass(frozen=True)
class ScenarioSetup:
    """Values on top of the scenario's file, objects that exist before the install, and
    an external database to run (None: the chart's own)."""

    set_values: dict[str, str]
    existing: list[Doc]
    external_database: Doc | None


def setup_for(scenario: str, values: dict[str, Any], smtp: Smtp) -> ScenarioSetup:
    set_values = {"smtp.host": smtp.host, "smtp.port": str(smtp.port), "smtp.security": "none"}
    existing: list[Doc] = []
    external: Doc | None = None
    external_db = values["externalDatabase"]
    if not values["postgresql"]["enabled"]:
        external = external_database_pod(external_db)
        if external_db["existingSecret"]:
            key = external_db["existingSecretPasswordKey"]
            existing.append(secret(external_db["existingSecret"], {key: EXTERNAL_DB_PASSWORD}))
        else:
            set_values["externalDatabase.password"] = EXTERNAL_DB_PASSWORD
    for role in ("cache", "broker"):
        auth = values[role]["auth"]
        if auth["enabled"] and auth["existingSecret"]:
            password = os.urandom(12).hex()
            existing.append(secret(auth["existingSecret"], {"redis-password": password}))
    if values["api"]["auth"]["existingSecret"]:
        # The production shape keeps the API keys' HMAC key in a Secret of its own.
        hmac_key = os.urandom(32).hex()
        existing.append(
            secret(values["api"]["auth"]["existingSecret"], {"api-key-hmac-key": hmac_key})
        )
    operator = values["operator"]
    if operator["enabled"] and operator["pgbouncerAdmin"]["existingSecret"]:
        # The sidecars' PgBouncer admin user, as the production shape keeps it.
        admin = {
            "username": operator["pgbouncerAdmin"]["username"],
            "password": os.urandom(12).hex(),
        }
        existing.append(secret(operator["pgbouncerAdmin"]["existingSecret"], admin))
    if operator["enabled"] and operator["postgres"]["existingSecret"]:
        # The operator's Postgres access: the database the scenario names.
        access = {
            "host": external_db["host"],
            "port": str(external_db["port"]),
            "database": external_db["database"],
            "username": external_db["username"],
            "password": EXTERNAL_DB_PASSWORD,
        }
        existing.append(secret(operator["postgres"]["existingSecret"], access))
    if values["smtp"]["existingSecret"]:
        # The test's SMTP server offers no AUTH: no username, so the worker never logs in.
        set_values["smtp.username"] = ""
        existing.append(secret(values["smtp"]["existingSecret"], {"smtp-password": "unused"}))
    return ScenarioSetup(set_values, existing, external)


def external_database_pod(external_db: dict[str, Any]) -> Doc:
    """A pod template of the stand-in Postgres as the managed database the values name."""
    probe = {
        "exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-U", external_db["username"]]},
        "periodSeconds": 1,
        "failureThreshold": 120,
    }
    return {
        "metadata": {"labels": {"app": "external-database"}},
        "spec": {
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
            "containers": [
                {
                    "name": "postgres",
                    "image": "localhost/stampede-standin-postgres:15",
                    "args": [
                        "-c",
                        "ssl=on",
                        "-c",
                        "ssl_cert_file=/etc/standin-tls/server.crt",
                        "-c",
                        "ssl_key_file=/etc/standin-tls/server.key",
                        "-c",
                        f"max_connections={external_db['maxConnections']}",
                    ],
                    "env": [
                        {"name": "POSTGRES_USER", "value": external_db["username"]},
                        {"name": "POSTGRES_DB", "value": external_db["database"]},
                        {"name": "POSTGRES_PASSWORD", "value": EXTERNAL_DB_PASSWORD},
                        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                        {
                            "name": "POSTGRES_INITDB_ARGS",
                            "value": "--auth-host=scram-sha-256 --auth-local=trust",
                        },
                    ],
                    "startupProbe": probe,
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                        {"name": "run", "mountPath": "/var/run/postgresql"},
                    ],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "run", "emptyDir": {}}],
        },
    }
