"""The kopf wiring: one long-lived reconcile loop (a daemon) per ConnectionBudget, woken by
any change of the Deployments, HPAs and Pods it reads, by a spec change, or by its timer.

The Deployments, HPAs and Pods are only watched (kopf indexes and event handlers): nothing
is ever written to them, no annotation, no finalizer. Everything kopf stores about its
handling lives on the ConnectionBudget itself (settings.py of kopf: see ``kopf_settings``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from lightkube import AsyncClient
from pydantic import ValidationError

from services.operator import metrics
from services.operator.cycle import next_delay, run_cycle
from services.operator.kube_client import KubeError, describe, patch_status
from services.operator.kube_io import KubeBudgetIO
from services.operator.kube_observation import (
    DeploymentFacts,
    HPAFacts,
    PodFacts,
    deployment_facts,
    hpa_facts,
    observe,
    pod_facts,
)
from services.operator.settings import OperatorSettings
from services.operator.spec import GROUP, PLURAL, VERSION, BudgetSpec
from services.operator.status import now_iso

# Many pod events arrive together during a scale-out: reconcile once for the batch.
DEBOUNCE_S = 0.2

LoginFn = Callable[..., Awaitable[kopf.ConnectionInfo | None] | kopf.ConnectionInfo | None]


@dataclass
class Wakeups:
    """One event per budget ("namespace/name"), set when something it reads changed."""

    events: dict[str, asyncio.Event] = field(default_factory=dict)

    def of(self, key: str) -> asyncio.Event:
        return self.events.setdefault(key, asyncio.Event())

    def wake(self, namespace: str | None) -> None:
        for key, event in self.events.items():
            if namespace is None or key.startswith(f"{namespace}/"):
                event.set()


def kopf_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """kopf's settings for this operator: standalone (one replica, no peering objects), no
    namespace or CRD scanning (a namespaced Role cannot list them), progress and
    finalizers under our own domain on the ConnectionBudget only."""
    settings = settings or kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Our own Events say what changed; kopf's handler log lines stay in the log.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "stampede-operator"
    return settings


def build_registry(
    client: AsyncClient,
    settings: OperatorSettings,
    login: LoginFn | None = None,
) -> kopf.OperatorRegistry:
    """Every handler of the operator, on a registry of its own (no import-time globals)."""
    registry = kopf.OperatorRegistry()
    wakeups = Wakeups()

    if login is not None:
        kopf.on.login(registry=registry)(login)
    else:

        @kopf.on.login(registry=registry)
        def login_in_cluster(**kwargs: Any) -> kopf.ConnectionInfo | None:
            return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.index("apps", "v1", "deployments", id="deployments", registry=registry)
    def deployments(name: str, body: kopf.Body, **_: Any) -> dict[str, DeploymentFacts]:
        return {name: deployment_facts(body)}

    @kopf.index(
        "autoscaling", "v2", "horizontalpodautoscalers", id="autoscalers", registry=registry
    )
    def autoscalers(name: str, body: kopf.Body, **_: Any) -> dict[str, HPAFacts]:
        return {name: hpa_facts(body)}

    @kopf.index("", "v1", "pods", id="pods", registry=registry)
    def pods(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str | None, PodFacts]:
        return {namespace: pod_facts(body)}

    @kopf.on.event("apps", "v1", "deployments", registry=registry)
    @kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", registry=registry)
    @kopf.on.event("", "v1", "pods", registry=registry)
    def wake_on_change(namespace: str | None, **_: Any) -> None:
        wakeups.wake(namespace)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def wake_on_new_spec(
        namespace: str | None, name: str, meta: kopf.Meta, status: kopf.Status, **_: Any
    ) -> None:
        # Our own status patches come back as events too: only a new generation counts.
        if meta.get("generation") != status.get("observedGeneration"):
            wakeups.of(f"{namespace}/{name}").set()

    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL,
        id="keep_within_budget",
        registry=registry,
        cancellation_timeout=5.0,
        # An unforeseen crash restarts the loop soon, not after kopf's default minute.
        backoff=2.0,
    )
    async def keep_within_budget(
        namespace: str | None,
        name: str,
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        # kopf passes the indexes as keyword arguments named after their functions; its
        # DaemonFn protocol cannot declare them.
        deployments: kopf.Index[str, DeploymentFacts] = kwargs["deployments"]
        autoscalers: kopf.Index[str, HPAFacts] = kwargs["autoscalers"]
        pods: kopf.Index[str | None, PodFacts] = kwargs["pods"]
        key = f"{namespace}/{name}"
        wakeup = wakeups.of(key)
        try:
            while not stopped:
                wakeup.clear()
                delay = await _reconcile(
                    client, settings, key, body, deployments, autoscalers, pods, logger
                )
                if await _woken(wakeup, stopped, delay):
                    await asyncio.sleep(DEBOUNCE_S)
        finally:
            deleted = kopf.DaemonStoppingReason.RESOURCE_DELETED
            if stopped.reason is not None and stopped.reason & deleted:
                metrics.forget(key)
                wakeups.events.pop(key, None)

    return registry


async def _reconcile(
    client: AsyncClient,
    settings: OperatorSettings,
    key: str,
    body: kopf.Body,
    deployments: kopf.Index[str, DeploymentFacts],
    autoscalers: kopf.Index[str, HPAFacts],
    pods: kopf.Index[str | None, PodFacts],
    logger: kopf.Logger,
) -> float:
    """One reconcile of the budget ``body`` (a live view kopf keeps current); the delay
    until the next."""
    namespace, name = key.split("/", 1)
    generation = body.meta.get("generation")
    previous = dict(body.status)
    try:
        spec = BudgetSpec.parse(body.spec)
    except ValidationError as error:
        message = f"invalid spec: {error.error_count()} errors: {error.errors()[0]['msg']}"
        await _invalid(client, body, key, generation, previous, message, logger)
        return settings.retry_interval_s * 15
    observation = observe(
        spec,
        {k: _one(v) for k, v in deployments.items()},
        {k: _one(v) for k, v in autoscalers.items()},
        list(pods.get(namespace, [])),
    )
    io = KubeBudgetIO(client, namespace, spec, body)
    result = await run_cycle(key, spec, observation, io, previous, generation)
    try:
        await patch_status(client, namespace, name, result.status)
    except KubeError as error:
        logger.warning(f"status not written: {describe(error)}")
        return settings.retry_interval_s
    for event in result.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logger.info(f"{event.reason}: {event.message}")
    return next_delay(result, spec, settings.retry_interval_s)


async def _woken(wakeup: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> bool:
    """Wait up to ``delay`` for a wakeup; return at once when the daemon is stopped (so
    kopf removes its finalizer from a deleted budget without waiting)."""
    wake = asyncio.ensure_future(wakeup.wait())
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({wake, stop}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        wake.cancel()
        stop.cancel()
    return wakeup.is_set() and not stopped


def _one(values: Any) -> Any:
    # A name maps to one object in a namespace; kopf's index values are collections.
    return next(iter(values))


async def _invalid(
    client: AsyncClient,
    body: kopf.Body,
    key: str,
    generation: int | None,
    previous: Mapping[str, Any],
    message: str,
    logger: kopf.Logger,
) -> None:
    namespace, name = key.split("/", 1)
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    changed = before.get("Ready", {}).get("reason") != "InvalidSpec"
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": message,
        "lastTransitionTime": before.get("Ready", {}).get("lastTransitionTime")
        if not changed
        else now_iso(),
    }
    others = [c for t, c in before.items() if t != "Ready"]
    status = {"conditions": [condition, *others], "observedGeneration": generation}
    try:
        await patch_status(client, namespace, name, status)
    except KubeError as error:
        logger.warning(f"status not written: {describe(error)}")
    if changed:
        kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
    metrics.CONDITION.labels(key, "Ready").set(0)
