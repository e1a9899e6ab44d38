"""``retrain``: ask for a model to be retrained, on a Kafka topic or as a Kubernetes Job.

The request says which model (and version) drifted or degraded, why (the alert and
its evidence) and on which data window, so the training pipeline needs nothing else::

    {"model": "fraud", "model_version": "7", "reason": "FeatureDrift: ...", "evidence": {...},
     "window": {"from": 1764100000.0, "to": 1764186400.0}, "fingerprint": "...", "rule_id": "...",
     "alertname": "...", "labels": {...}, "decision_key": "<sha256>", "requested_by": "<agent>",
     "requested_at": 1764186460.2}

``via: topic`` (default) publishes it to ``topic`` (default ``watchkeeper.retrain``, key =
the model). Delivery is at-least-once, so the consumer deduplicates on ``decision_key``.
"At most one open request per model" cannot be seen on a topic, so this mode relies on
the runtime's ledger: ``min_interval`` (default 6h; the same setting as ``cooldown``) is
the minimum time between two requests for one model, and ``max_per_hour`` bounds bursts.

``via: job`` creates a batch/v1 Job from ``job_template`` (a Job manifest or its
``spec``) in ``namespace``, named after the decision key so a re-run finds the Job it
created instead of starting a second training run. An open request is a Job labelled
``watchkeeper.io/model=<model>`` that has neither completed nor failed: while one
exists, ``plan`` is blocked with ``open-request``. The request is passed to the Job as
``WATCHKEEPER_*`` environment variables and as JSON in an annotation.

Example rule entries::

    actions:
      - type: retrain
        model: "{{ $labels.model }}"
        min_interval: 12h
      - type: retrain
        via: job
        namespace: ml-training
        job_template:
          spec:
            backoffLimit: 1
            template:
              spec:
                restartPolicy: Never
                containers: [{name: train, image: registry.example/fraud-train:1.4}]
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.model import Alert

from .base import Action, ActionFailed, ActionParams, NotConfigured, Plan, Target, TransientActionError
from .allowed_names import AllowedNames
from .kube_jobs import build_job, create_job_once, job_name, label_value, open_jobs
from .label_template import check_label_template, render_label_template

__all__ = ["Retrain", "RetrainParams", "retrain_request"]


class RetrainParams(ActionParams):
    """Which model, where the request goes, and how often.

    Parameters
    ----------
    via
        ``topic`` (publish a request) or ``job`` (create a Kubernetes Job).
    model, model_version
        ``{{ $labels.NAME }}`` templates or literals; a missing ``model_version`` label
        leaves it null in the request, a missing ``model`` label fails the action.
    topic
        Kafka topic for ``via: topic``; unset, the agent's retrain topic
        (``WATCHKEEPER_TOPIC_RETRAIN``, default ``watchkeeper.retrain``).
    namespace, job_template
        For ``via: job``: where the Job goes and what it runs.
    window
        How much data before the alert the retraining should look at.
    min_interval
        Minimum time between two requests for one model (the ``cooldown``).
    allowed
        Optional ``{names, patterns}`` (RE2, whole name): the models this entry may ask
        to retrain; another model from the labels is refused and audited.
    """

    via: Literal["topic", "job"] = "topic"
    model: str = "{{ $labels.model }}"
    model_version: str = "{{ $labels.model_version }}"
    topic: str | None = Field(None, min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    namespace: str | None = None
    job_template: dict[str, Any] | None = None
    window: float = Field(86_400.0, description="Data window before the alert (default 24h).")
    cooldown: float = Field(6 * 3600.0, alias="min_interval", description="Minimum time between requests per model.")
    max_per_hour: int = Field(1, ge=0)
    allowed: AllowedNames | None = None

    @field_validator("model", "model_version", "namespace")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else check_label_template(value)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> float:
        from agent.duration import parse_duration

        return parse_duration(value)

    @model_validator(mode="after")
    def _job_needs(self) -> RetrainParams:
        if self.via == "job":
            if not self.namespace or self.job_template is None:
                raise ValueError("retrain via: job needs namespace and job_template")
            spec = self.job_template.get("spec", self.job_template)
            containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") if isinstance(spec, dict) else None
            if not containers:
                raise ValueError("job_template needs spec.template.spec.containers (a Job manifest or its spec)")
        elif self.job_template is not None:
            raise ValueError("job_template is only used with via: job")
        return self


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def retrain_request(alert: Alert, model: str, version: str | None, window_s: float, key: str, agent: str) -> dict[str, Any]:
    """The request body; ``window`` ends when the alert fired (or became active)."""
    end = alert.fired_at if alert.fired_at is not None else alert.active_at
    summary = alert.annotations.get("summary", "")
    return {
        "model": model,
        "model_version": version,
        "reason": f"{alert.name}: {summary}" if summary else f"{alert.name} (rule {alert.rule_id}) fired",
        "evidence": _finite(dict(alert.evidence)),
        "window": {"from": end - window_s, "to": end},
        "fingerprint": alert.fingerprint,
        "rule_id": alert.rule_id,
        "alertname": alert.name,
        "labels": dict(alert.labels),
        "decision_key": key,
        "requested_by": agent,
        "requested_at": time.time(),
    }


class Retrain(Action):
    """Requests one retraining per alert incident, at most one open (job) or one per interval (topic)."""

    kind = "retrain"
    Params = RetrainParams
    params: RetrainParams

    def _model(self, alert: Alert) -> tuple[str, str | None]:
        model = render_label_template(self.params.model, alert.labels, "model")
        try:
            version: str | None = render_label_template(self.params.model_version, alert.labels, "model_version")
        except ActionFailed:
            version = None
        return model, version

    def target(self, alert: Alert) -> Target:
        """The model (checked against ``allowed``), and for ``via: job`` the checked namespace, before any request."""
        model, _ = self._model(alert)
        if self.params.allowed is not None:
            self.params.allowed.check(model, "model")
        if self.params.via == "job":
            namespace = render_label_template(self.params.namespace or "", alert.labels, "namespace")
            return Target("retrain", label_value(model), self.context.kube_scope().namespace(namespace).name)
        return Target("retrain", model)

    def _key(self, alert: Alert, target: Target) -> str:
        if self.decision_key:
            return self.decision_key
        from .audit import decision_key

        return decision_key(alert.rule_id, alert.fingerprint, alert.active_at, 0, target.key)

    @property
    def topic(self) -> str:
        return self.params.topic or str(self.context.extra.get("retrain_topic") or "watchkeeper.retrain")

    async def plan(self, alert: Alert, target: Target) -> Plan:
        model, version = self._model(alert)
        key = self._key(alert, target)
        detail = {"decision_key": key, "via": self.params.via}
        if self.params.via == "topic":
            after = {"topic": self.topic, "model": model, "model_version": version}
            return Plan(target, {}, after, reason=f"publish a retrain request for {model} to {self.topic}", detail=detail)
        where = self.context.kube_scope().namespace(target.namespace)
        name = where.object("job", job_name(f"retrain-{label_value(model).lower()}-", key)).name
        where.api_client()  # NotConfigured before anything else
        jobs = await asyncio.to_thread(open_jobs, where, model)
        before = {"open_jobs": [j["name"] for j in jobs]}
        after = {"job": name, "namespace": target.namespace, "model": model, "model_version": version}
        mine = [j for j in jobs if j["decision_key"] == key[:63]]
        if mine:
            return Plan(target, before, after, noop=True, reason=f"job {mine[0]['name']} exists for this decision", detail=detail)
        if jobs:
            return Plan(
                target,
                before,
                after,
                blocked="open-request",
                reason=f"retraining of {model} is already requested: job {jobs[0]['name']} has not finished",
                detail=detail,
            )
        return Plan(target, before, after, reason=f"create job {target.namespace}/{name} to retrain {model}", detail=detail)

    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        model, version = self._model(alert)
        key = str(plan.detail.get("decision_key") or self._key(alert, plan.target))
        request = retrain_request(alert, model, version, self.params.window, key, self.context.agent_id)
        if self.params.via == "topic":
            if self.context.publish is None:
                raise NotConfigured("no Kafka producer in the action context (retrain via: topic needs one)")
            value = json.dumps(request, sort_keys=True, allow_nan=False).encode()
            try:
                await self.context.publish(self.topic, model.encode(), value)
            except Exception as error:  # the producer's errors are transport errors: retry
                raise TransientActionError(f"publish to {self.topic} failed: {type(error).__name__}: {error}") from error
            return {"topic": self.topic, "model": model, "model_version": version, "decision_key": key}
        env = {
            "WATCHKEEPER_MODEL": model,
            "WATCHKEEPER_MODEL_VERSION": version or "",
            "WATCHKEEPER_REASON": request["reason"],
            "WATCHKEEPER_DECISION_KEY": key,
            "WATCHKEEPER_WINDOW_FROM": repr(request["window"]["from"]),
            "WATCHKEEPER_WINDOW_TO": repr(request["window"]["to"]),
        }
        assert self.params.job_template is not None
        target = self.context.kube_scope().namespace(plan.target.namespace).object("job", str(plan.after["job"]))
        job = build_job(self.params.job_template, target.name, model, key, env, request)
        return await asyncio.to_thread(create_job_once, target, job)
