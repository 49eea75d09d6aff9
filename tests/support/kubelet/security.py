"""A container's securityContext as podman options, and the kubelet's runAsNonRoot check.

Container settings override the pod's. ``runAsUser``/``runAsGroup`` fall back to the
image's USER; ``fsGroup`` and ``supplementalGroups`` are supplementary groups of every
container. A read-only root gets no tmpfs of podman's making (Kubernetes mounts none).
Capabilities start from the runtime's defaults, minus ``drop`` (``ALL``: none), plus
``add``. ``allowPrivilegeEscalation: false`` is no_new_privs. Resource limits are not
applied (cgroup v1 without delegation here).
"""

from __future__ import annotations

from tests.support.kubelet.environment import ContainerConfigError
from tests.support.kubelet.objects import Doc


def _image_ids(image_user: str) -> tuple[str, str | None]:
    user, _, group = image_user.partition(":")
    return user or "0", group or None


def effective_user(pod_context: Doc, context: Doc, image_user: str) -> tuple[str, str | None]:
    """(user, group) the container runs as: numeric from the spec, else the image's."""
    image_uid, image_gid = _image_ids(image_user)
    uid = context.get("runAsUser", pod_context.get("runAsUser"))
    gid = context.get("runAsGroup", pod_context.get("runAsGroup"))
    return (
        image_uid if uid is None else str(uid),
        image_gid if gid is None else str(gid),
    )


def verify_run_as_non_root(pod_context: Doc, context: Doc, image: str, image_user: str) -> None:
    """The kubelet's check, before it creates the container; raises ContainerConfigError."""
    if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot", False)):
        return
    uid, _ = effective_user(pod_context, context, image_user)
    if not uid.isdigit():
        raise ContainerConfigError(
            f"container has runAsNonRoot and image {image} has non-numeric user ({uid}), "
            "cannot verify user is non-root"
        )
    if int(uid) == 0:
        raise ContainerConfigError(f"container has runAsNonRoot and image {image} will run as root")


def security_options(pod_context: Doc, context: Doc, image_user: str) -> list[str]:
    uid, gid = effective_user(pod_context, context, image_user)
    options = ["--user", uid if gid is None else f"{uid}:{gid}"]
    groups = [*pod_context.get("supplementalGroups", [])]
    if "fsGroup" in pod_context:
        groups.append(pod_context["fsGroup"])
    for group in groups:
        options += ["--group-add", str(group)]
    if context.get("readOnlyRootFilesystem"):
        options += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = context.get("capabilities") or {}
    for capability in capabilities.get("drop", []):
        options.append(f"--cap-drop={capability}")
    for capability in capabilities.get("add", []):
        options.append(f"--cap-add={capability}")
    if context.get("privileged"):
        options.append("--privileged")
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile")) or {}
    if seccomp.get("type") == "Unconfined":
        options += ["--security-opt", "seccomp=unconfined"]
    return options
