"""Kubernetes reads and writes the actions share, over the official (sync) ``kubernetes`` client.

Every function takes a :class:`~actions.kube_target.KubeTarget` (namespace allow-list
and names checked before any request; the API client comes from it), never a raw
client and strings. Every function here blocks; actions call them through ``asyncio.to_thread``. Each one
follows the desired-state habit: read, compare, write with the ``resourceVersion`` that
was read (a stale write is a 409, never a lost update), and on 409 read again and
retry a bounded number of times. Errors leave as the two kinds the runtime knows:
:class:`TransientActionError` (409 after the retries, 429, 5xx, connection) is worth a
retry with backoff, :class:`ActionFailed` (403, 404, 422, bad input) is reported at once.

HPAs are in :mod:`actions.kube_hpa`, Jobs in :mod:`actions.kube_jobs`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from actions.base import ActionFailed, TransientActionError
from actions.kube_target import KubeTarget

__all__ = [
    "LAST_ACTION",
    "LAST_ACTION_AT",
    "LAST_ACTION_BY",
    "LAST_ACTION_TARGET",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "ScaleState",
    "annotate_deployment",
    "apis",
    "api_status",
    "kube_errors",
    "mark_annotations",
    "read_deployment",
    "read_scale",
    "retry_conflicts",
    "restart_deployment",
    "rollout_in_progress",
    "scale_deployment",
]

LAST_ACTION = "watchkeeper.io/last-action"
"""Deployment annotation: the decision key of the last action on it (the idempotency mark)."""
LAST_ACTION_TARGET = "watchkeeper.io/last-action-target"
"""What that action set, e.g. ``replicas=6`` or ``hpa/ranker.minReplicas=6``: lets a re-run finish a half-done one."""
LAST_ACTION_AT = "watchkeeper.io/last-action-at"
LAST_ACTION_BY = "watchkeeper.io/last-action-by"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTART_REASON = "watchkeeper.io/restart-reason"
RESTART_KEY = "watchkeeper.io/restart-key"

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
CONFLICT_RETRIES = 5
"""Re-reads after a 409 before giving up with a TransientActionError (the runtime retries later)."""
_T = TypeVar("_T")


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def apis() -> Any:
    from kubernetes import client

    return client


@contextmanager
def kube_errors(what: str) -> Iterator[None]:
    """Translate client and transport errors into the runtime's two kinds, naming ``what``."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as error:
        status = int(error.status or 0)
        message = _api_message(error)
        if status == 409 or status == 429 or status >= 500 or status == 0:
            raise TransientActionError(f"{what}: HTTP {status} {message}") from error
        if status == 403:
            raise ActionFailed(f"{what}: forbidden (HTTP 403): {message}; check the agent's Role") from error
        if status == 404:
            raise ActionFailed(f"{what}: not found (HTTP 404): {message}") from error
        raise ActionFailed(f"{what}: HTTP {status} {message}") from error
    except (HTTPError, OSError) as error:
        raise TransientActionError(f"{what}: cannot reach the Kubernetes API: {error}") from error


def api_status(error: BaseException) -> int | None:
    """The HTTP status behind an error raised by :func:`kube_errors`, or None."""
    from kubernetes.client.exceptions import ApiException

    cause = error.__cause__
    return int(cause.status or 0) if isinstance(cause, ApiException) else None


def _api_message(error: Any) -> str:
    """The ``message`` of the Status the server sent, else the HTTP reason."""
    import json

    try:
        body = json.loads(error.body or "{}")
        return str(body.get("message") or error.reason or "")
    except (TypeError, ValueError):
        return str(error.reason or "")


def retry_conflicts(what: str, attempt: Callable[[], _T], conflicts: list[int]) -> _T:
    """Run ``attempt`` (which re-reads), again after each 409, at most ``CONFLICT_RETRIES`` more times."""
    for n in range(CONFLICT_RETRIES + 1):
        try:
            with kube_errors(what):
                return attempt()
        except TransientActionError as error:
            if api_status(error) != 409 or n == CONFLICT_RETRIES:
                raise
            conflicts.append(n + 1)
            time.sleep(random.uniform(0.5, 1.5) * 0.01 * 2**n)  # exponential, jittered: 10 ms .. 0.3 s
    raise AssertionError("unreachable")


# -- Deployments and their scale ----------------------------------------------------


def _deployment(target: KubeTarget) -> tuple[str, str]:
    """``(namespace, name)`` of a checked Deployment target; anything else is a programming error."""
    if not isinstance(target, KubeTarget) or target.kind != "deployment":
        raise TypeError(f"expected a checked deployment KubeTarget, got {target!r}")
    return target.ns, target.name


@dataclass(frozen=True, slots=True)
class ScaleState:
    """What the scale action reads: the Deployment's replicas, its mark and rollout state."""

    replicas: int
    resource_version: str
    generation: int
    observed_generation: int
    annotations: Mapping[str, str]
    rollout: str | None  # why a rollout is in progress, or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "resource_version": self.resource_version,
            "generation": self.generation,
            "observed_generation": self.observed_generation,
        }


def read_deployment(target: KubeTarget) -> ScaleState:
    namespace, name = _deployment(target)
    with kube_errors(f"read deployment {namespace}/{name}"):
        dep = apis().AppsV1Api(target.api_client()).read_namespaced_deployment(name, namespace)
    return ScaleState(
        replicas=int(dep.spec.replicas if dep.spec.replicas is not None else 1),
        resource_version=str(dep.metadata.resource_version),
        generation=int(dep.metadata.generation or 0),
        observed_generation=int((dep.status and dep.status.observed_generation) or 0),
        annotations=dict(dep.metadata.annotations or {}),
        rollout=rollout_in_progress(dep),
    )


def rollout_in_progress(dep: Any) -> str | None:
    """Why a rollout of this Deployment is under way, or None when it is settled.

    In progress means the controller is still moving Pods from one template to another:
    it has not seen the newest spec (``generation`` > ``observedGeneration``), or Pods of
    an older template remain (``status.replicas`` > ``updatedReplicas``: a rolling update
    under way, paused mid-way, or stuck past its progress deadline).

    Deliberately not "in progress":

    * ``updatedReplicas`` < ``spec.replicas`` with no older Pods: that is a scale-up whose
      Pods are still being created (right after every scale, and for as long as a quota
      or admission refuses Pods), not a change of template;
    * ``availableReplicas`` < ``replicas``: Pods that are not ready are often the very
      incident the scale action answers (and on the test control plane, which has no
      kubelet, Pods stay Pending forever); blocking then would defeat the action.

    The API server bumps a Deployment's ``generation`` for annotation changes too (this
    action's own mark included), so until the controller catches up (milliseconds to
    seconds) a second plan sees "not observed yet"; a Deployment under a continuous
    stream of writes stays "in progress" by this definition.
    """
    status = dep.status
    generation = int(dep.metadata.generation or 0)
    observed = int((status and status.observed_generation) or 0)
    if observed < generation:
        return f"the controller has not observed generation {generation} yet (observed {observed})"
    updated = int((status and status.updated_replicas) or 0)
    total = int((status and status.replicas) or 0)
    if total > updated:
        paused = " (paused)" if dep.spec.paused else ""
        stuck = ""
        for condition in (status and status.conditions) or []:
            if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
                stuck = " (progress deadline exceeded)"
        return f"{total - updated} Pod(s) of an older template remain ({updated}/{total} updated){paused}{stuck}"
    return None


def read_scale(target: KubeTarget) -> tuple[int, str]:
    """``(spec.replicas, resourceVersion)`` from the scale subresource."""
    namespace, name = _deployment(target)
    with kube_errors(f"read scale of deployment {namespace}/{name}"):
        scale = apis().AppsV1Api(target.api_client()).read_namespaced_deployment_scale(name, namespace)
    return int(scale.spec.replicas or 0), str(scale.metadata.resource_version)


def scale_deployment(target: KubeTarget, replicas: int) -> dict[str, Any]:
    """Set ``spec.replicas`` through the scale subresource, guarded by resourceVersion.

    Re-reads and retries on 409 (another writer, or the controller-manager, got there
    first); returns ``{"replicas", "resource_version", "conflicts", "changed"}``. Already at
    ``replicas``: no write at all.
    """
    namespace, name = _deployment(target)
    apps = apis().AppsV1Api(target.api_client())
    conflicts: list[int] = []
    changed = [False]

    def attempt() -> Any:
        scale = apps.read_namespaced_deployment_scale(name, namespace)
        if scale.spec.replicas == replicas:
            return scale
        body = {"metadata": {"resourceVersion": scale.metadata.resource_version}, "spec": {"replicas": replicas}}
        result = apps.patch_namespaced_deployment_scale(name, namespace, body, _content_type=MERGE_PATCH)
        changed[0] = True
        return result

    scale = retry_conflicts(f"scale deployment {namespace}/{name} to {replicas}", attempt, conflicts)
    return {
        "replicas": int(scale.spec.replicas or 0),
        "resource_version": str(scale.metadata.resource_version),
        "conflicts": len(conflicts),
        "changed": changed[0],
    }


def annotate_deployment(target: KubeTarget, annotations: Mapping[str, str]) -> str:
    """Merge ``annotations`` into the Deployment's metadata; returns the new resourceVersion.

    No resourceVersion precondition: a merge of our own annotation keys commutes with
    every other writer, so a conflict could only make this fail for nothing.
    """
    namespace, name = _deployment(target)
    body = {"metadata": {"annotations": dict(annotations)}}
    with kube_errors(f"annotate deployment {namespace}/{name}"):
        dep = apis().AppsV1Api(target.api_client()).patch_namespaced_deployment(name, namespace, body, _content_type=MERGE_PATCH)
    return str(dep.metadata.resource_version)


def mark_annotations(key: str, target: str, agent_id: str) -> dict[str, str]:
    return {LAST_ACTION: key, LAST_ACTION_TARGET: target, LAST_ACTION_AT: _now_rfc3339(), LAST_ACTION_BY: agent_id}


def restart_deployment(target: KubeTarget, reason: str, *, key: str | None = None) -> dict[str, Any]:
    """``kubectl rollout restart``: stamp the Pod template so the controller rolls new Pods.

    Strategic merge patch of ``spec.template.metadata.annotations[kubectl.kubernetes.io/restartedAt]``
    (what kubectl writes), plus the reason on the Deployment itself. With ``key`` (a
    decision key) the restart is idempotent: a Deployment already carrying that key is
    left alone and ``{"restarted": False}`` comes back. Blocking; wrap in ``asyncio.to_thread``.
    """
    namespace, name = _deployment(target)
    apps = apis().AppsV1Api(target.api_client())
    what = f"restart deployment {namespace}/{name}"
    if key:
        with kube_errors(what):
            dep = apps.read_namespaced_deployment(name, namespace)
        if (dep.metadata.annotations or {}).get(RESTART_KEY) == key:
            template = dep.spec.template.metadata.annotations or {}
            return {"restarted": False, "restarted_at": template.get(RESTARTED_AT), "generation": dep.metadata.generation}
    stamp = _now_rfc3339()
    meta: dict[str, str] = {RESTART_REASON: reason[:1000]}
    if key:
        meta[RESTART_KEY] = key
    body = {"metadata": {"annotations": meta}, "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    with kube_errors(what):
        dep = apps.patch_namespaced_deployment(name, namespace, body, _content_type=STRATEGIC_MERGE_PATCH)
    return {"restarted": True, "restarted_at": stamp, "generation": dep.metadata.generation}
