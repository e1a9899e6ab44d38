"""A test-only action kind that changes an in-memory "system" and remembers every apply.

It behaves like a real kind: ``plan`` reads (and finds the decision's mark, as the
``watchkeeper.io/last-action`` annotation would be found), ``apply`` writes the mark and
counts. Its params script failures (``fail_times`` transient errors, ``final_error``),
a kind-specific refusal (``blocked``), and a hang after the write (``hang_after_apply``)
so a test can stop the agent between the write and the audit record.

It is never in the shipped registry: a test passes ``{"recording": RecordingAction}`` as
the remediator's registry, or adds it to ``ACTIONS`` for one test with monkeypatch (so
rule files naming it load), and passes the system in ``ActionContext.extra["system"]``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from actions.base import Action, ActionFailed, ActionParams, Plan, Target, TransientActionError
from agent.model import Alert

__all__ = ["RecordingAction", "RecordingParams", "RecordingSystem"]


@dataclass
class RecordingSystem:
    """The "production system" the recording kind changes."""

    marks: dict[str, str] = field(default_factory=dict)  # target key -> decision key of the last change
    applies: list[tuple[str, str]] = field(default_factory=list)  # (decision key, target key), in order
    attempts: dict[str, int] = field(default_factory=dict)  # decision key -> apply calls
    plans: int = 0
    hang: asyncio.Event = field(default_factory=asyncio.Event)  # set to let a hung apply return
    undone: list[tuple[str, str]] = field(default_factory=list)  # (undo decision key, target key), in order


class RecordingParams(ActionParams):
    service: str | None = None  # target name; default: the alert's ``service`` label
    namespace: str = ""
    fail_times: int = 0
    final_error: bool = False
    blocked: str | None = None
    hang_after_apply: bool = False
    apply_s: float = 0.0  # how long the write takes (two agents racing for one target)

    undoable: ClassVar[bool] = True  # verified only when a rule says verify or undo: the older tests count records


class RecordingAction(Action):
    kind = "recording"
    Params = RecordingParams
    params: RecordingParams

    @property
    def system(self) -> RecordingSystem:
        system: RecordingSystem = self.context.extra["system"]
        return system

    def target(self, alert: Alert) -> Target:
        name = self.params.service or alert.labels.get("service")
        if not name:
            raise ActionFailed("no service label on the alert and no service in the rule")
        return Target("deployment", name, self.params.namespace)

    async def plan(self, alert: Alert, target: Target) -> Plan:
        self.system.plans += 1
        changes = sum(1 for _, t in self.system.applies if t == target.key)
        if self.system.marks.get(target.key) == self.decision_key:
            return Plan(target, {"changes": changes}, {"changes": changes}, noop=True, reason="already changed for this alert")
        reason = f"would be blocked: {self.params.blocked}" if self.params.blocked else f"change {target.key}"
        return Plan(target, {"changes": changes}, {"changes": changes + 1}, blocked=self.params.blocked, reason=reason)

    async def plan_undo(
        self, before: Mapping[str, Any], after: Mapping[str, Any], alert: Alert, target: Target
    ) -> Plan:
        self.system.plans += 1
        changes = sum(1 for _, t in self.system.applies if t == target.key)
        if self.system.marks.get(target.key) == self.decision_key:
            return Plan(target, {"changes": changes}, {"changes": changes}, noop=True, reason="already undone")
        return Plan(target, {"changes": changes}, {"changes": changes + 1}, reason=f"undo on {target.key}", detail={"undo": True})

    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        key = self.decision_key
        tries = self.system.attempts[key] = self.system.attempts.get(key, 0) + 1
        if self.params.final_error:
            raise ActionFailed("refused: 403 forbidden")
        if tries <= self.params.fail_times:
            raise TransientActionError(f"409 conflict (try {tries})")
        await asyncio.sleep(self.params.apply_s)
        self.system.marks[plan.target.key] = key
        self.system.applies.append((key, plan.target.key))
        if plan.detail.get("undo"):
            self.system.undone.append((key, plan.target.key))
        if self.params.hang_after_apply:
            await self.system.hang.wait()
        return {"changes": sum(1 for _, t in self.system.applies if t == plan.target.key)}
