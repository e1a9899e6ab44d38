"""Kubernetes Jobs for the ``retrain`` action: create once per decision, find the open ones per model.

A Job's name is derived from the decision key (``<prefix><10 hex>``), so creating it
twice is a 409 from the API server rather than a second training run: the server,
not a list-then-create race, guarantees "one Job per decision" even when two agents or
a restart mid-action try at once. The labels carry the model and a 63-character prefix
of the decision key (a label value's limit) so ``kubectl get jobs -l`` finds them.
Blocking functions; call through ``asyncio.to_thread``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from actions.base import ActionFailed, TransientActionError
from actions.kube import api_status, kube_errors
from actions.kube_target import KubeNamespace, KubeTarget

__all__ = ["DECISION_LABEL", "MODEL_LABEL", "create_job_once", "job_name", "open_jobs"]

MODEL_LABEL = "watchkeeper.io/model"
DECISION_LABEL = "watchkeeper.io/decision-key"
REQUEST_ANNOTATION = "watchkeeper.io/request"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(value: str) -> str:
    """A string made safe as a label value (63 characters, alphanumerics at both ends).

    >>> label_value("fraud/scorer v2")
    'fraud-scorer-v2'
    """
    return _LABEL_VALUE.sub("-", value)[:63].strip("-_.")


def job_name(prefix: str, key: str) -> str:
    """``prefix`` (cut to fit) followed by 10 hex digits of the decision key.

    >>> job_name("retrain-fraud-", "ab" * 32)
    'retrain-fraud-ababababab'
    """
    prefix = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).lstrip("-")[:52] or "watchkeeper-retrain-"
    return prefix + key[:10]


def _finished(job: Any) -> bool:
    status = job.status
    if status is None:
        return False
    for condition in status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return True
    return bool(status.completion_time)


def open_jobs(where: KubeNamespace, model: str) -> list[dict[str, Any]]:
    """Jobs for ``model`` in the checked namespace ``where`` that have not completed or failed, oldest first."""
    from kubernetes import client

    if not isinstance(where, KubeNamespace):
        raise TypeError(f"open_jobs takes a checked KubeNamespace, not {where!r}")
    namespace = where.name
    selector = f"{MODEL_LABEL}={label_value(model)}"
    with kube_errors(f"list jobs {selector} in {namespace}"):
        jobs = client.BatchV1Api(where.api_client()).list_namespaced_job(namespace, label_selector=selector).items
    found = [
        {
            "name": j.metadata.name,
            "decision_key": (j.metadata.labels or {}).get(DECISION_LABEL, ""),
            "created": j.metadata.creation_timestamp.isoformat() if j.metadata.creation_timestamp else None,
            "active": int((j.status and j.status.active) or 0),
        }
        for j in jobs
        if not _finished(j)
    ]
    return sorted(found, key=lambda j: j["created"] or "")


def build_job(
    template: Mapping[str, Any], name: str, model: str, key: str, env: Mapping[str, str], request: Mapping[str, Any]
) -> dict[str, Any]:
    """The Job to create: the rule's template with our name, labels, request and env added.

    ``template`` is a whole batch/v1 Job manifest or only its ``spec``. The request
    reaches the training code twice: as ``WATCHKEEPER_*`` environment variables in every
    container and as JSON in the ``watchkeeper.io/request`` annotation.
    """
    job = copy.deepcopy(dict(template))
    if "spec" not in job:
        job = {"spec": job}
    if "template" not in job["spec"]:
        raise ActionFailed("job_template has no spec.template (a Pod template)")
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    meta = job.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta.pop("namespace", None)
    meta["name"] = name
    labels = {MODEL_LABEL: label_value(model), DECISION_LABEL: key[:63], "app.kubernetes.io/managed-by": "watchkeeper"}
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), REQUEST_ANNOTATION: json.dumps(request, sort_keys=True)}
    pod_meta = job["spec"]["template"].setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    containers = (job["spec"]["template"].get("spec") or {}).get("containers") or []
    if not containers:
        raise ActionFailed("job_template's Pod template has no containers")
    for container in containers:
        extra = [{"name": k, "value": v} for k, v in env.items()]
        container["env"] = [e for e in container.get("env") or [] if e.get("name") not in env] + extra
    return job


def create_job_once(target: KubeTarget, job: Mapping[str, Any]) -> dict[str, Any]:
    """Create ``job`` as the checked ``target``; if one of that name exists already (a re-run of this decision), return it.

    ``{"job", "namespace", "created", "decision_key"}``. A name clash with a Job of a
    different decision is an ``ActionFailed``: never adopt someone else's Job.
    """
    from kubernetes import client

    if not isinstance(target, KubeTarget) or target.kind != "job" or job["metadata"]["name"] != target.name:
        raise TypeError(f"create_job_once takes the checked job target of the manifest, not {target!r}")
    namespace, name = target.ns, target.name
    batch = client.BatchV1Api(target.api_client())
    key = job["metadata"]["labels"][DECISION_LABEL]
    try:
        with kube_errors(f"create job {namespace}/{name}"):
            created = batch.create_namespaced_job(namespace, dict(job))
        return {"job": created.metadata.name, "namespace": namespace, "created": True, "decision_key": key}
    except TransientActionError as error:
        if api_status(error) != 409:
            raise
    with kube_errors(f"read job {namespace}/{name}"):
        existing = batch.read_namespaced_job(name, namespace)
    if (existing.metadata.labels or {}).get(DECISION_LABEL) != key:
        raise ActionFailed(f"job {namespace}/{name} exists but belongs to another decision; not adopting it")
    return {"job": name, "namespace": namespace, "created": False, "decision_key": key}
