"""``scale``: give a Kubernetes Deployment more (or fewer) replicas, within limits.

Read, compare, write: ``plan`` reads the Deployment (replicas, its idempotency mark,
rollout state) and the HPA that targets it, if any, and computes the wanted count:
``replicas`` (an absolute target) or ``step`` (relative), clamped to
``[min_replicas, max_replicas]`` and to ``max_step`` per action. ``apply`` writes the
mark, then the count through the scale subresource with the resourceVersion it read
(409: read again, retry), and reads it back.

With an HPA on the Deployment, writing ``replicas`` would be undone by the HPA at its
next sync, so the action raises the HPA's ``minReplicas`` instead (never lowers it) and
leaves ``replicas`` to the HPA.

Refusals (``Plan.blocked``): ``blast-radius`` when the Deployment (or its HPA) is already
at ``max_replicas`` (or the HPA's ``maxReplicas``) and the alert asks for more;
``rollout-in-progress`` while the controller is moving Pods to a new template (see
:func:`actions.kube.rollout_in_progress`).

Idempotency mark: before it writes, ``apply`` annotates the Deployment with
``watchkeeper.io/last-action: <decision key>`` and ``watchkeeper.io/last-action-target``
(``replicas=6`` or ``hpa/<name>.minReplicas=6``). A later ``plan`` with the same key finds
it: target reached -> ``noop``; not reached (a crash between the two writes) -> finish
the recorded target, never a second step. Writing the mark first means a crash can
leave a mark without the change but never a change without the mark, and the mark
records an absolute target, so finishing it is safe.

Target resolution: ``namespace`` and ``deployment`` are ``{{ $labels.NAME }}`` templates
over the alert's labels (defaults: the labels ``namespace`` and ``deployment``) or
literals. The result passes :mod:`actions.kube_target` (the namespace allow-list and
Kubernetes name rules) in ``target``, before ``plan`` reads anything, and again for
every request. Example rule entry::

    actions:
      - type: scale
        deployment: "{{ $labels.service }}"
        namespace: ml-serving
        step: 2
        max_replicas: 12
        max_step: 4
        mode: enforce
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from agent.model import Alert

from .base import Action, ActionFailed, ActionParams, Plan, Target, TransientActionError
from .kube import (
    LAST_ACTION,
    LAST_ACTION_TARGET,
    annotate_deployment,
    mark_annotations,
    read_deployment,
    scale_deployment,
)
from .kube_hpa import find_hpa, raise_hpa_min_replicas
from .kube_target import KubeTarget
from .label_template import check_label_template, render_label_template

__all__ = ["Scale", "ScaleParams"]


class ScaleParams(ActionParams):
    """Which Deployment, how many replicas, and the blast-radius limits.

    Parameters
    ----------
    namespace, deployment
        ``{{ $labels.NAME }}`` templates over the alert's labels, or literal names.
    replicas
        Absolute target. Exactly one of ``replicas`` and ``step``.
    step
        Relative change (+N scales out, -N in).
    min_replicas, max_replicas
        Never go below / above (blast radius). With an HPA, ``max_replicas`` caps the
        ``minReplicas`` this action sets; the HPA's own ``maxReplicas`` caps it too.
    max_step
        The most replicas one action adds or removes.
    """

    namespace: str = "{{ $labels.namespace }}"
    deployment: str = "{{ $labels.deployment }}"
    replicas: int | None = Field(None, ge=0, le=10_000)
    step: int | None = Field(None, ge=-10_000, le=10_000)
    min_replicas: int = Field(1, ge=0, le=10_000)
    max_replicas: int = Field(10, ge=1, le=10_000)
    max_step: int = Field(5, ge=1, le=10_000)

    undoable: ClassVar[bool] = True
    verified_by_default: ClassVar[bool] = True

    _templates = field_validator("namespace", "deployment")(check_label_template)

    @model_validator(mode="after")
    def _consistent(self) -> ScaleParams:
        if (self.replicas is None) == (self.step is None):
            raise ValueError("scale needs exactly one of replicas (a target) or step (+N/-N)")
        if self.step == 0:
            raise ValueError("step must not be 0")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        if self.replicas is not None and not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(
                f"replicas {self.replicas} is outside [min_replicas {self.min_replicas}, max_replicas {self.max_replicas}]"
            )
        return self


class Scale(Action):
    """Scales one Deployment per alert incident (or raises its HPA's floor)."""

    kind = "scale"
    Params = ScaleParams
    params: ScaleParams

    def _deployment(self, target: Target) -> KubeTarget:
        """The checked Deployment (allow-list, names) every request goes through; ``TargetRefused`` if not."""
        return self.context.kube_scope().namespace(target.namespace).object("deployment", target.name)

    def target(self, alert: Alert) -> Target:
        namespace = render_label_template(self.params.namespace, alert.labels, "namespace")
        name = render_label_template(self.params.deployment, alert.labels, "deployment")
        checked = self.context.kube_scope().namespace(namespace).object("deployment", name)
        return Target("deployment", checked.name, checked.ns)

    def _key(self, alert: Alert, target: Target) -> str:
        """The runtime sets ``decision_key``; a direct caller (a test, a script) gets the same formula at index 0."""
        if self.decision_key:
            return self.decision_key
        from .audit import decision_key

        return decision_key(alert.rule_id, alert.fingerprint, alert.active_at, 0, target.key)

    def _wanted(self, base: int) -> int:
        """The count this alert asks for, from ``base``, within the blast-radius limits."""
        p = self.params
        wanted = p.replicas if p.replicas is not None else base + (p.step or 0)
        asked = wanted
        wanted = max(base - p.max_step, min(base + p.max_step, wanted))
        wanted = max(p.min_replicas, min(p.max_replicas, wanted))
        # Never move against the asked direction (a Deployment someone scaled above
        # max_replicas by hand is not scaled down by an alert asking for more).
        return max(wanted, base) if asked >= base else min(wanted, base)

    async def plan(self, alert: Alert, target: Target) -> Plan:
        deployment = self._deployment(target)
        deployment.api_client()  # NotConfigured before anything else
        state = await asyncio.to_thread(read_deployment, deployment)
        hpa = await asyncio.to_thread(find_hpa, deployment)
        key = self._key(alert, target)
        before: dict[str, Any] = state.to_dict()
        if hpa is not None:
            before.update(hpa=hpa["name"], hpa_min_replicas=hpa["min_replicas"], hpa_max_replicas=hpa["max_replicas"])
        detail: dict[str, Any] = {"decision_key": key, "via": "hpa" if hpa else "scale"}
        if hpa:
            detail["hpa"] = hpa["name"]

        if state.annotations.get(LAST_ACTION) == key:
            return self._resume(target, state.annotations.get(LAST_ACTION_TARGET, ""), before, hpa, detail)
        if state.rollout:
            return Plan(
                target,
                before,
                before,
                blocked="rollout-in-progress",
                reason=f"rollout in progress: {state.rollout}",
                detail=detail,
            )
        if hpa is not None:
            return self._plan_hpa(target, state.replicas, hpa, before, detail)

        wanted = self._wanted(state.replicas)
        after = {"replicas": wanted}
        detail["mark"] = f"replicas={wanted}"
        if wanted == state.replicas:
            return self._unchanged(target, before, after, state.replicas, "replicas", self.params.max_replicas, detail)
        return Plan(
            target,
            before,
            after,
            reason=f"scale {target.namespace}/{target.name} from {state.replicas} to {wanted}",
            detail=detail,
        )

    def _plan_hpa(
        self, target: Target, replicas: int, hpa: Mapping[str, Any], before: dict[str, Any], detail: dict[str, Any]
    ) -> Plan:
        floor = int(hpa["min_replicas"])
        ceiling = min(self.params.max_replicas, int(hpa["max_replicas"]))
        wanted = min(ceiling, self._wanted(max(replicas, floor)))
        after = {"hpa": hpa["name"], "hpa_min_replicas": max(wanted, floor)}
        detail["mark"] = f"hpa/{hpa['name']}.minReplicas={wanted}"
        if wanted <= floor:
            return self._unchanged(target, before, after, floor, f"HPA {hpa['name']} minReplicas", ceiling, detail)
        return Plan(
            target,
            before,
            after,
            reason=f"raise minReplicas of HPA {hpa['name']} (targets {target.name}) from {floor} to {wanted}",
            detail=detail,
        )

    def _unchanged(
        self,
        target: Target,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        now: int,
        what: str,
        ceiling: int,
        detail: Mapping[str, Any],
    ) -> Plan:
        p = self.params
        asks_more = (p.step or 0) > 0 or (p.replicas is not None and p.replicas > now)
        asks_less = (p.step or 0) < 0 or (p.replicas is not None and p.replicas < now)
        if asks_more and now >= ceiling:
            return Plan(
                target,
                before,
                after,
                blocked="blast-radius",
                reason=f"{what} is already {now}, at the limit {ceiling}",
                detail=detail,
            )
        if asks_less and now <= p.min_replicas:
            return Plan(
                target,
                before,
                after,
                blocked="blast-radius",
                reason=f"{what} is already {now}, at min_replicas {p.min_replicas}",
                detail=detail,
            )
        return Plan(target, before, after, noop=True, reason=f"{what} is already {now}: nothing to change", detail=detail)

    def _resume(
        self, target: Target, mark: str, before: dict[str, Any], hpa: Mapping[str, Any] | None, detail: dict[str, Any]
    ) -> Plan:
        """The Deployment carries this decision's mark: done already, or finish the recorded target."""
        name, _, value = mark.rpartition("=")
        if not value.isdigit():
            return Plan(
                target, before, before, noop=True, reason="this decision's mark is on the deployment already", detail=detail
            )
        wanted = int(value)
        detail.update(mark=mark, resumed=True)
        if name.startswith("hpa/"):
            hpa_name = name[len("hpa/") :].removesuffix(".minReplicas")
            current = before.get("hpa_min_replicas") if hpa and hpa["name"] == hpa_name else None
            after: dict[str, Any] = {"hpa": hpa_name, "hpa_min_replicas": wanted}
            detail.update(via="hpa", hpa=hpa_name)
            done = current is not None and current >= wanted
        else:
            after = {"replicas": wanted}
            detail["via"] = "scale"
            done = before["replicas"] == wanted
        if done:
            return Plan(
                target,
                before,
                after,
                noop=True,
                reason=f"already done by this decision ({mark}, marked {LAST_ACTION})",
                detail=detail,
            )
        return Plan(target, before, after, reason=f"finish this decision's interrupted change ({mark})", detail=detail)

    async def plan_undo(
        self, before: Mapping[str, Any], after: Mapping[str, Any], alert: Alert, target: Target
    ) -> Plan:
        """Scale back to the replicas the undone decision found, if the Deployment still has the ones it set.

        An HPA floor the action raised is not lowered (``blocked="undo-unsupported"``):
        the HPA may since scale on its own, and lowering a floor is not a change this
        agent makes. Blast-radius limits do not apply: the count goes back to one that ran before.
        """
        deployment = self._deployment(target)
        deployment.api_client()
        state = await asyncio.to_thread(read_deployment, deployment)
        key = self.decision_key or self._key(alert, target)
        now: dict[str, Any] = state.to_dict()
        detail: dict[str, Any] = {"decision_key": key, "via": "scale", "undo": True}
        if state.annotations.get(LAST_ACTION) == key:
            return self._resume(target, state.annotations.get(LAST_ACTION_TARGET, ""), now, None, detail)
        if after.get("hpa") or "replicas" not in before or "replicas" not in after:
            return Plan(target, now, now, blocked="undo-unsupported", reason="the action raised an HPA floor; not lowered", detail=detail)
        wanted, left = int(before["replicas"]), int(after["replicas"])
        if state.replicas != left:
            return Plan(
                target, now, now, blocked="changed-since",
                reason=f"replicas are {state.replicas} now, not the {left} the action set: changed since, left alone",
                detail=detail,
            )
        if state.rollout:
            return Plan(target, now, now, blocked="rollout-in-progress", reason=f"rollout in progress: {state.rollout}", detail=detail)
        detail["mark"] = f"replicas={wanted}"
        return Plan(
            target, now, {"replicas": wanted},
            reason=f"undo: scale {target.namespace}/{target.name} back from {left} to {wanted}", detail=detail,
        )

    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        target = plan.target
        deployment = self._deployment(target)
        key = str(plan.detail.get("decision_key") or self._key(alert, target))
        mark = str(plan.detail.get("mark") or "")
        if not mark:
            raise ActionFailed("the plan carries no target to apply (was it blocked or a noop?)")
        await asyncio.to_thread(annotate_deployment, deployment, mark_annotations(key, mark, self.context.agent_id))
        if plan.detail.get("via") == "hpa":
            wanted = int(plan.after["hpa_min_replicas"])
            hpa = deployment.namespace.object("hpa", str(plan.after["hpa"]))
            result = await asyncio.to_thread(raise_hpa_min_replicas, hpa, wanted)
            if result["min_replicas"] < wanted:
                raise TransientActionError(f"HPA {result['hpa']} minReplicas reads {result['min_replicas']}, not {wanted}")
            state = await asyncio.to_thread(read_deployment, deployment)
            return {
                "hpa": result["hpa"],
                "hpa_min_replicas": result["min_replicas"],
                "hpa_max_replicas": result["max_replicas"],
                "replicas": state.replicas,
                "conflicts": result["conflicts"],
                "mark": mark,
            }
        wanted = int(plan.after["replicas"])
        result = await asyncio.to_thread(scale_deployment, deployment, wanted)
        state = await asyncio.to_thread(read_deployment, deployment)
        if state.replicas != wanted or state.annotations.get(LAST_ACTION) != key:
            raise TransientActionError(
                f"deployment {target.namespace}/{target.name} reads replicas={state.replicas} "
                f"mark={state.annotations.get(LAST_ACTION, '')[:12]} after the write (wanted {wanted}, {key[:12]})"
            )
        return {**state.to_dict(), "conflicts": result["conflicts"], "mark": mark}
