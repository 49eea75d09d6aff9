"""The kopf wiring: one reconcile loop per ConnectionBudget (``budget_loops``), woken by
any change of the Deployments, HPAs and Pods it reads, by a spec change, or by its timer.

The Deployments, HPAs and Pods are only watched (kopf indexes and event handlers): nothing
is ever written to them, no annotation, no finalizer. The ConnectionBudget gets no
finalizer either, and kopf stores nothing on it: only its status is written.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf
from lightkube import AsyncClient
from pydantic import ValidationError

from services.operator import metrics
from services.operator.budget_loops import BudgetLoop, BudgetLoops
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

LoginFn = Callable[..., Awaitable[kopf.ConnectionInfo | None] | kopf.ConnectionInfo | None]


def kopf_settings(settings: kopf.OperatorSettings | None = None) -> kopf.OperatorSettings:
    """kopf's settings for this operator: standalone (one replica, no peering objects), no
    namespace or CRD scanning (a namespaced Role cannot list them). No handler of ours
    needs kopf's progress or diff-base storage; were one added, it would land under our
    own domain on the ConnectionBudget only."""
    settings = settings or kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.scanning.disabled = True
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
    loops = BudgetLoops()

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
        loops.wake(namespace)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def track_budget(
        type: str | None,
        namespace: str | None,
        name: str,
        body: kopf.Body,
        meta: kopf.Meta,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        if settings.budget_name is not None and name != settings.budget_name:
            return
        key = f"{namespace}/{name}"
        if type == "DELETED":
            await loops.stop(key)
            metrics.forget(key)
            return
        loop = loops.loops.get(key)
        if loop is None:
            # kopf passes the indexes as keyword arguments named after their ids; its
            # handler protocols cannot declare them. They stay current for the loop.
            indexes = (kwargs["deployments"], kwargs["autoscalers"], kwargs["pods"])
            new = BudgetLoop(body)
            reconcile = functools.partial(_reconcile, client, settings, key, new, *indexes, logger)
            loops.start(key, new, reconcile)
            return
        loop.body = body
        # Our own status patches come back as events too: only a new generation counts.
        if meta.get("generation") != loop.written_generation:
            loop.wakeup.set()

    @kopf.on.cleanup(registry=registry)
    async def stop_loops(**_: Any) -> None:
        await loops.stop_all()

    return registry


async def _reconcile(
    client: AsyncClient,
    settings: OperatorSettings,
    key: str,
    loop: BudgetLoop,
    deployments: kopf.Index[str, DeploymentFacts],
    autoscalers: kopf.Index[str, HPAFacts],
    pods: kopf.Index[str | None, PodFacts],
    logger: kopf.Logger,
) -> float:
    """One reconcile of the budget as kopf saw it last; the delay until the next. Never
    raises: an unforeseen error is logged and retried soon."""
    try:
        return await _reconcile_once(
            client, settings, key, loop, deployments, autoscalers, pods, logger
        )
    except Exception:
        logger.exception("reconcile failed; retrying")
        return settings.retry_interval_s


async def _reconcile_once(
    client: AsyncClient,
    settings: OperatorSettings,
    key: str,
    loop: BudgetLoop,
    deployments: kopf.Index[str, DeploymentFacts],
    autoscalers: kopf.Index[str, HPAFacts],
    pods: kopf.Index[str | None, PodFacts],
    logger: kopf.Logger,
) -> float:
    namespace, name = key.split("/", 1)
    body: kopf.Body = loop.body
    generation = body.meta.get("generation")
    previous = loop.written_status if loop.written_status is not None else dict(body.status)
    loop.written_generation = generation
    try:
        spec = BudgetSpec.parse(body.spec)
    except ValidationError as error:
        message = f"invalid spec: {error.error_count()} errors: {error.errors()[0]['msg']}"
        loop.written_status = await _invalid(
            client, body, key, generation, previous, message, logger
        )
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
    loop.written_status = {**previous, **result.status}
    for event in result.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logger.info(f"{event.reason}: {event.message}")
    return next_delay(result, spec, settings.retry_interval_s)


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
) -> dict[str, Any]:
    """Ready=False with the reason; the status as written."""
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
    status: dict[str, Any] = {"conditions": [condition, *others]}
    if generation is not None:
        status["observedGeneration"] = generation
    try:
        await patch_status(client, namespace, name, status)
    except KubeError as error:
        logger.warning(f"status not written: {describe(error)}")
    if changed:
        kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
    metrics.CONDITION.labels(key, "Ready").set(0)
    return {**previous, **status}
