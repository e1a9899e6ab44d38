"""Alert lifecycle exactly as Prometheus runs it, driven by event time.

inactive -> pending when the condition first holds; pending -> firing once it has held
for ``for``; a pending alert whose condition clears goes back to inactive silently; a
firing alert whose condition clears keeps firing for ``keep_firing_for`` and is then
resolved. A resolved alert is forgotten; if the condition returns, a new alert starts
(same fingerprint, new ``active_at``), as in Prometheus.

The table of pending and firing alerts is bounded by ``max_active``. At the bound a *new*
alert is refused (counted in ``refused``; the agent exports it and logs it) while every
alert already pending or firing keeps its course: an incident that already pages goes on
paging and resolves, which is what a flood of invented series must not be able to stop.
The price, stated: during such a flood a new incident may not open an alert until the
flood's alerts resolve, which is why refusals are a metric to page on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.model import Alert, AlertState, Finding, Score, fingerprint
from agent.rules import Rule

__all__ = ["AlertLifecycle", "TrackedAlert"]

SeriesKey = tuple[str, tuple[str, ...]]


@dataclass(slots=True)
class TrackedAlert:
    """Mutable lifecycle state of one (rule, series) alert."""

    rule: Rule
    key: tuple[str, ...]
    labels: dict[str, str]
    fingerprint: str
    state: AlertState
    active_at: float
    score: Score
    fired_at: float | None = None
    keep_since: float | None = None
    extra_annotations: dict[str, str] = field(default_factory=dict)

    def snapshot(self, state: AlertState | None = None, resolved_at: float | None = None) -> Alert:
        value = self.score.value
        evidence = dict(self.score.evidence)
        annotations = {name: t.render(self.labels, value, evidence) for name, t in self.rule.annotations.items()}
        annotations.update(self.extra_annotations)
        return Alert(
            fingerprint=self.fingerprint,
            rule_id=self.rule.id,
            state=state or self.state,
            labels=dict(self.labels),
            annotations=annotations,
            active_at=self.active_at,
            value=value,
            fired_at=self.fired_at,
            resolved_at=resolved_at,
            evidence=evidence,
            series=self.key,
        )


@dataclass
class AlertLifecycle:
    """Advances alerts from findings and emits the transitions worth sending."""

    active: dict[SeriesKey, TrackedAlert] = field(default_factory=dict)
    max_active: int = 10_000
    #: new alerts refused at ``max_active`` since the caller last reset it
    refused: int = 0

    def __post_init__(self) -> None:
        if self.max_active < 1:
            raise ValueError(f"max_active must be >= 1, got {self.max_active}")

    def advance(self, rules: Mapping[str, Rule], findings: Iterable[Finding]) -> list[Alert]:
        """Apply findings in order; return alerts that started firing or resolved."""
        out: list[Alert] = []
        for f in findings:
            rule = rules.get(f.rule_id)
            if rule is None:
                continue
            transition = self._step(rule, f)
            if transition is not None:
                out.append(transition)
        return out

    def _step(self, rule: Rule, f: Finding) -> Alert | None:
        skey = (f.rule_id, f.series)
        tracked = self.active.get(skey)
        if f.score.active:
            if tracked is None:
                if len(self.active) >= self.max_active:
                    self.refused += 1
                    return None
                labels = rule.alert_labels(f.series)
                tracked = TrackedAlert(rule, f.series, labels, fingerprint(labels), AlertState.PENDING, f.ts, f.score)
                self.active[skey] = tracked
            tracked.score = f.score
            tracked.rule = rule
            tracked.keep_since = None
            if tracked.state is AlertState.PENDING and f.ts - tracked.active_at >= rule.for_s:
                tracked.state = AlertState.FIRING
                tracked.fired_at = f.ts
                return tracked.snapshot()
            return None
        if tracked is None:
            return None
        if tracked.state is AlertState.PENDING:
            del self.active[skey]
            return None
        # firing, condition cleared: keep firing for keep_firing_for, then resolve
        if tracked.keep_since is None:
            tracked.keep_since = f.ts
        if f.ts - tracked.keep_since >= rule.keep_firing_for_s:
            del self.active[skey]
            return tracked.snapshot(AlertState.RESOLVED, resolved_at=f.ts)
        return None

    def annotate(self, rule_id: str, series: tuple[str, ...], extra: Mapping[str, str]) -> None:
        """Add annotations made outside the rule (a report link) to every later snapshot."""
        tracked = self.active.get((rule_id, series))
        if tracked is not None:
            tracked.extra_annotations.update(extra)

    def firing(self) -> list[Alert]:
        """Snapshots of every firing alert, for re-sending while they fire."""
        return [t.snapshot() for t in self.active.values() if t.state is AlertState.FIRING]

    def counts(self) -> dict[str, int]:
        out = {"pending": 0, "firing": 0}
        for t in self.active.values():
            out[t.state.value] += 1
        return out

    def forget_rules(self, keep: Mapping[str, Any], now: float) -> list[Alert]:
        """Resolve alerts whose rule was removed by a reload (Prometheus does the same)."""
        out: list[Alert] = []
        for skey, tracked in list(self.active.items()):
            if skey[0] not in keep:
                del self.active[skey]
                if tracked.state is AlertState.FIRING:
                    out.append(tracked.snapshot(AlertState.RESOLVED, resolved_at=now))
        return out
