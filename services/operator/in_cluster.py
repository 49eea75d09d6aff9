"""Running the operator against the Kubernetes API: kopf, namespaced, standalone."""

from __future__ import annotations

import asyncio

import kopf
from lightkube import AsyncClient, KubeConfig

from services.operator.handlers import LoginFn, build_registry, kopf_settings
from services.operator.kube_client import FIELD_MANAGER
from services.operator.settings import OperatorSettings


class MissingNamespaceError(Exception):
    """The operator watches one namespace, which it must be told."""


async def run_in_cluster(
    settings: OperatorSettings,
    *,
    client: AsyncClient | None = None,
    login: LoginFn | None = None,
    liveness: bool = True,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Until ``stop_flag`` (or a signal): kopf's watches, the budgets' reconcile loops and the
    liveness endpoint. ``client`` and ``login`` point elsewhere than the pod's service
    account (the tests' emulated API)."""
    if not settings.namespace:
        raise MissingNamespaceError("set STAMPEDE_OPERATOR_NAMESPACE (the pod's namespace)")
    if client is None:
        client = AsyncClient(
            config=KubeConfig.from_env(), namespace=settings.namespace, field_manager=FIELD_MANAGER
        )
    endpoint = f"http://{settings.health_addr}:{settings.health_port}/healthz"
    try:
        await kopf.operator(
            registry=build_registry(client, settings, login),
            settings=kopf_settings(),
            namespaces=[settings.namespace],
            clusterwide=False,
            standalone=True,
            liveness_endpoint=endpoint if liveness else None,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        await client.close()
