"""Event -> findings -> alert transitions: the whole decision path, with no I/O.

The same object runs inside the Kafka consumer, under ``watchkeeper rules test`` and
under backtests, which is why replays and rule tests are exact: nothing here reads the
wall clock. Time moves only with event time (``process``) or when the caller says so
(``tick``: the runtime does it after each batch and when the stream goes quiet).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from agent.errors import EventError
from agent.model import Alert, Finding, Score
from agent.rules import Rule, RuleSet

from .alerts import AlertLifecycle
from .engine import RuleEngine

__all__ = ["Pipeline"]


@dataclass
class Pipeline:
    """Rules, series state and alert lifecycle for one agent (or one test)."""

    rules: RuleSet
    max_series: int = 100_000
    staleness_s: float = 300.0
    max_lateness_s: float = 600.0
    clock: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        if self.staleness_s <= 0 or self.max_lateness_s < 0:
            raise ValueError("staleness_s must be > 0 and max_lateness_s >= 0")
        self.lifecycle = AlertLifecycle()
        self.engine = RuleEngine(self.rules, self.max_series, protected=self.lifecycle.active)
        self._by_id: dict[str, Rule] = self.rules.by_id()
        self._owner_clock: OrderedDict[str, float] = OrderedDict()

    def process(self, event: Any) -> list[Alert]:
        """Feed one parsed event; raise ``EventError`` if it is too late to use."""
        ts = event.ts
        owner = event.owner
        seen = self._owner_clock.get(owner)
        if seen is not None and ts < seen - self.max_lateness_s:
            raise EventError(f"late: ts is {seen - ts:.0f}s behind {owner!r}'s event clock (max_lateness_s={self.max_lateness_s:g})")
        if seen is None or ts > seen:
            self._owner_clock[owner] = ts
            self._owner_clock.move_to_end(owner)
            if len(self._owner_clock) > self.max_series:
                self._owner_clock.popitem(last=False)
        if ts > self.clock:
            self.clock = ts
        findings = self.engine.observe(event.type, event, ts)
        return self.lifecycle.advance(self._by_id, findings) if findings else []

    def tick(self, now: float | None = None) -> list[Alert]:
        """Advance event time to ``now`` and re-evaluate every pending or firing alert.

        This is how alerts fire after ``for`` and resolve after ``keep_firing_for`` when
        no new event arrives for their series; a series silent for ``staleness_s`` counts
        as no longer matching, as a stale series does in Prometheus.
        """
        if now is not None and now > self.clock:
            self.clock = now
        now = self.clock
        findings: list[Finding] = []
        for skey in list(self.lifecycle.active):
            state = self.engine.series(skey)
            if state is None or state.last_score is None:
                continue
            if now - state.last_ts > self.staleness_s:
                score = _inactive(state.last_score)
            else:
                evaluate = getattr(state.detector, "evaluate", None)
                score = evaluate(now) if evaluate is not None else state.last_score
            findings.append(Finding(skey[0], skey[1], max(now, state.last_ts), score))
        return self.lifecycle.advance(self._by_id, findings)

    def reload(self, rules: RuleSet) -> list[Alert]:
        """Swap rules in place; alerts of removed rules resolve now."""
        self.engine.swap_rules(rules)
        self.rules = rules
        self._by_id = rules.by_id()
        return self.lifecycle.forget_rules(self._by_id, self.clock)

    def firing(self) -> list[Alert]:
        return self.lifecycle.firing()


def _inactive(score: Score) -> Score:
    evidence = dict(score.evidence)
    evidence["stale"] = True
    return Score(0.0, False, score.value, evidence)
