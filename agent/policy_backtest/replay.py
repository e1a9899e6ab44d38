"""The replay: recorded events through the agent's own decision path, in event time.

Nothing here is a model of the agent: the events go through the runtime's
:class:`~agent.runtime.pipeline.Pipeline` (detectors, ``for``, ``keep_firing_for``,
sweeps) and every firing transition through the runtime's
:class:`~agent.runtime.remediator.Remediator` with its :class:`~actions.guards.GuardPipeline`
and :class:`~actions.ledger.Ledger` (mode ceiling, idempotency, cooldown, per-target and
fleet budgets, namespace allow-list, the kinds' own refusals, approvals, lease). Only
three things differ from production, each injected, none patched:

- the clock is the replay's event clock (so cooldowns, budgets and approval timeouts
  run in event time);
- the action kinds are the simulated ones (``kinds.py``), acting on
  :class:`~.targets.SimulatedTargets`;
- the action context has no Kubernetes client and no MLflow URI, and audit records go
  to a list instead of a topic.

An approve-mode decision stays ``pending-approval`` (nobody approves in a backtest) and
expires after the action's ``approval_timeout`` of event time, as it would unanswered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from actions.audit import AuditRecord
from actions.base import ActionContext
from actions.local_lock import LocalLock
from agent.errors import EventError
from agent.model import EVENT_ADAPTER, Alert, AlertState
from agent.rules import RuleSet
from agent.runtime.pipeline import Pipeline
from agent.runtime.remediator import Remediator
from agent.runtime.selfmetrics import SelfMetrics

from .kinds import simulated_registry
from .sources import Recorded
from .targets import SimulatedTargets

__all__ = ["PolicyRun", "PolicySettings", "replay"]

LAST_TS = 253_402_300_799.0
"""9999-12-31T23:59:59Z: later event times cannot be shown as dates; such events are skipped as ``implausible-time``."""


@dataclass(frozen=True)
class PolicySettings:
    """The agent settings the policy is judged under (those of ``watchkeeper run``).

    ``ceiling`` defaults to ``enforce``: the question a backtest answers is what the
    rules would do if allowed to; set it to the production ceiling to see that instead.
    """

    ceiling: str = "enforce"
    fleet_max_per_hour: int = 20
    namespaces: frozenset[str] | None = None
    agent_id: str = "backtest"
    tick_s: float = 1.0
    max_event_bytes: int = 256 * 1024


@dataclass
class PolicyRun:
    """What the replay saw and decided, in event time and replay order."""

    start: float
    end: float
    events: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    transitions: list[Alert] = field(default_factory=list)
    records: list[AuditRecord] = field(default_factory=list)
    #: (rule id, series) -> [(ts, detector value)] for the rules that have actions
    signal: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = field(default_factory=dict)
    targets: SimulatedTargets = field(default_factory=SimulatedTargets)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


class _Replay:
    """One replay's state: the event clock the guards read, and the sinks of audit records."""

    def __init__(self, rules: RuleSet, targets: SimulatedTargets, settings: PolicySettings, run: PolicyRun) -> None:
        self.ruleset = rules
        self.run = run
        self.clock = run.start if math.isfinite(run.start) else 0.0
        self.pipeline = Pipeline(rules)
        self.acting = tuple(r for r in rules.rules if r.actions)
        context = ActionContext(
            namespaces=settings.namespaces,
            lock=LocalLock(self.now),
            agent_id=settings.agent_id,
            extra={"simulated_targets": targets, "env": {}},
        )
        self.remediator = Remediator(
            rules=self.rules,
            context=context,
            publish=self.publish,
            metrics=SelfMetrics(),
            ceiling=settings.ceiling,
            fleet_max_per_hour=settings.fleet_max_per_hour,
            backoff_s=0.0,
            max_backoff_s=0.0,
            registry=simulated_registry(),
            clock=self.now,
        )

    def rules(self) -> RuleSet:
        return self.ruleset

    def now(self) -> float:
        return self.clock

    async def publish(self, record: AuditRecord) -> None:
        self.run.records.append(record)

    async def transitions(self, alerts: list[Alert]) -> None:
        self.run.transitions.extend(alerts)
        firing = [a for a in alerts if a.state is AlertState.FIRING and self.remediator.wants(a)]
        if firing:
            await self.remediator.handle(firing)

    def observe_signal(self, event: Any) -> None:
        for rule in self.acting:
            if event.type != rule.source or not rule.matches(event):
                continue
            key = rule.series(event)
            state = self.pipeline.engine.series((rule.id, key))
            score = state.last_score if state is not None else None
            if score is not None and isinstance(score.value, (int, float)) and math.isfinite(score.value):
                self.run.signal.setdefault((rule.id, key), []).append((event.ts, float(score.value)))


def _parse(recorded: Iterable[Recorded], run: PolicyRun, settings: PolicySettings) -> list[tuple[float, int, int, Any]]:
    """Valid events in the window, ordered by (event time, partition, offset)."""
    out: list[tuple[float, int, int, Any]] = []
    for rec in recorded:
        if len(rec.value) > settings.max_event_bytes:
            run.skip("too-large")
            continue
        try:
            event = EVENT_ADAPTER.validate_json(rec.value)
        except (ValidationError, ValueError):
            run.skip("invalid")
            continue
        if event.ts > LAST_TS:
            run.skip("implausible-time")
            continue
        if rec.partition < 0 and not run.start <= event.ts < run.end:
            run.skip("outside-window")
            continue
        out.append((event.ts, rec.partition, rec.offset, event))
    out.sort(key=lambda item: item[:3])
    return out


async def replay(
    rules: RuleSet,
    recorded: Iterable[Recorded],
    targets: SimulatedTargets,
    settings: PolicySettings = PolicySettings(),
    *,
    start: float = -math.inf,
    end: float = math.inf,
) -> PolicyRun:
    """Replay ``recorded`` through ``rules`` and every guard; see the module docstring."""
    run = PolicyRun(start, end, targets=targets)
    events = _parse(recorded, run, settings)
    if not math.isfinite(run.start):
        run.start = events[0][0] if events else 0.0
    if not math.isfinite(run.end):
        run.end = events[-1][0] if events else run.start
    state = _Replay(rules, targets, settings, run)
    state.clock = run.start
    next_tick = run.start
    for ts, _, _, event in events:
        state.clock = max(state.clock, ts)
        try:
            alerts = state.pipeline.process(event)
        except EventError:
            run.skip("late")
            continue
        run.events += 1
        state.observe_signal(event)
        if ts >= next_tick:
            alerts += state.pipeline.tick(ts)
            next_tick = ts - ts % settings.tick_s + settings.tick_s
            await state.transitions(alerts)
            await state.remediator.sweep()
        else:
            await state.transitions(alerts)
    state.clock = max(state.clock, run.end)
    await state.transitions(state.pipeline.tick(state.clock))
    await state.remediator.sweep()
    return run
