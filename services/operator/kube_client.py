"""The Kubernetes API calls the operator makes itself (kopf makes the watches, the Events
and nothing else): Secrets read, the pool ConfigMaps read and written, the status patched.
services/operator/rbac.py lists exactly these."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import ConfigMap, Secret
from lightkube.types import PatchType

from services.operator import pool_file
from services.operator.apply import StoreError
from services.operator.reconcile import ConfigurationError
from services.operator.spec import GROUP, KIND, PLURAL, POOL_FILE_KEY, VERSION

ConnectionBudget = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
FIELD_MANAGER = "stampede-operator"

# What lightkube raises: ApiError for a Kubernetes Status answer, its HTTP client's errors
# for anything else (an answer of another content type, a connection refused, a timeout).
KubeError = (ApiError, httpx2.HTTPError)


def status_code(error: Exception) -> int | None:
    if isinstance(error, ApiError):
        return error.status.code
    if isinstance(error, httpx2.HTTPStatusError):
        return error.response.status_code
    return None


def describe(error: Exception) -> str:
    if isinstance(error, ApiError):
        return str(error.status.message)
    return str(error).splitlines()[0] if str(error) else type(error).__name__


async def read_secret(client: AsyncClient, namespace: str, name: str) -> dict[str, str]:
    """A Secret's decoded data; ConfigurationError when it or its data is missing."""
    try:
        secret = await client.get(Secret, name, namespace=namespace)
    except KubeError as error:
        raise ConfigurationError(f"Secret {name}: {describe(error)}") from error
    encoded = dict(secret.data or {})
    decoded = {key: base64.b64decode(value).decode() for key, value in encoded.items()}
    return decoded | dict(secret.stringData or {})


class ConfigMapPoolStore:
    """The ``pool.ini`` key of the ConfigMap every sidecar of a consumer mounts.

    The chart creates it (so a pod can start before the first reconcile); the operator
    only patches its data, or creates it owned by the budget when it is missing."""

    def __init__(
        self, client: AsyncClient, namespace: str, name: str, owner: Mapping[str, Any]
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._name = name
        self._owner = owner
        self._exists = False

    async def read(self) -> int | None:
        try:
            config_map = await self._client.get(ConfigMap, self._name, namespace=self._namespace)
        except KubeError as error:
            if status_code(error) == 404:
                self._exists = False
                return None
            raise StoreError(f"ConfigMap {self._name}: {describe(error)}") from error
        self._exists = True
        return pool_file.parse((config_map.data or {}).get(POOL_FILE_KEY))

    async def write(self, pool_size: int) -> None:
        data = {POOL_FILE_KEY: pool_file.render(pool_size)}
        try:
            if self._exists:
                await self._client.patch(
                    ConfigMap,
                    self._name,
                    {"data": data},
                    namespace=self._namespace,
                    patch_type=PatchType.MERGE,
                    field_manager=FIELD_MANAGER,
                )
            else:
                await self._client.create(self._new(data), field_manager=FIELD_MANAGER)
                self._exists = True
        except KubeError as error:
            raise StoreError(f"ConfigMap {self._name}: {describe(error)}") from error

    def _new(self, data: dict[str, str]) -> ConfigMap:
        metadata = self._owner["metadata"]
        owner = OwnerReference(
            apiVersion=f"{GROUP}/{VERSION}",
            kind=KIND,
            name=metadata["name"],
            uid=metadata["uid"],
            controller=True,
        )
        return ConfigMap(
            metadata=ObjectMeta(
                name=self._name,
                namespace=self._namespace,
                labels={"app.kubernetes.io/managed-by": FIELD_MANAGER},
                ownerReferences=[owner] if metadata.get("uid") else None,
            ),
            data=data,
        )


async def patch_status(
    client: AsyncClient, namespace: str, name: str, status: dict[str, Any]
) -> None:
    """A merge patch of the status subresource (fields not in ``status`` keep their values)."""
    await client.patch(
        ConnectionBudget.Status,
        name,
        {"status": status},
        namespace=namespace,
        patch_type=PatchType.MERGE,
        field_manager=FIELD_MANAGER,
    )
