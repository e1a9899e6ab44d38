"""Event -> findings -> alert transitions: the whole decision path, with no I/O.

The same object runs inside the Kafka consumer, under ``watchkeeper rules test`` and
under backtests, which is why replays and rule tests are exact: nothing here reads the
wall clock. Time moves only with event time (``process``) or when the caller says so
(``tick``: the runtime does it after each batch and when the stream goes quiet).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from agent.config import SeriesLimits
from agent.errors import EventError
from agent.model import Alert, Finding, Score
from agent.rules import Rule, RuleSet

from .alerts import AlertLifecycle
from .engine import RuleEngine

__all__ = ["DetachedPartition", "Pipeline"]


@dataclass
class Pipeline:
    """Rules, series state and alert lifecycle for one agent (or one test)."""

    rules: RuleSet
    max_series: int = 100_000
    staleness_s: float = 300.0
    max_lateness_s: float = 600.0
    sweep_interval_s: float = 15.0
    #: series admission and the alert table's bound (docs/security-series.md)
    limits: SeriesLimits = field(default_factory=SeriesLimits)
    clock: float = field(default=float("-inf"), init=False)
    #: alert evaluations that found no series state (a bug if ever > 0; see tick)
    orphans_resolved: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.staleness_s <= 0 or self.max_lateness_s < 0:
            raise ValueError("staleness_s must be > 0 and max_lateness_s >= 0")
        limits = self.limits
        self.lifecycle = AlertLifecycle(max_active=limits.max_active_alerts)
        self.engine = RuleEngine(
            self.rules,
            self.max_series,
            protected=self.lifecycle.active,
            shares=limits.shares,
            proven_s=limits.proven_s,
            retain_s=limits.retain_s,
        )
        self._by_id: dict[str, Rule] = self.rules.by_id()
        self._owner_clock: OrderedDict[str, float] = OrderedDict()
        self._next_sweep = float("-inf")
        # fleet mode (partition_state.py): which input partition each owner's latest event
        # came from, each partition's own event clock, and the partitions with a backlog,
        # whose alerts are judged at their own clock rather than at the global one
        self._owner_where: dict[str, Any] = {}
        self.partition_clock: dict[Any, float] = {}
        self.held: set[Any] = set()
        self._next_sweep_of: dict[Any, float] = {}

    def process(self, event: Any, where: Any = None) -> list[Alert]:
        """Feed one parsed event; raise ``EventError`` if it is too late to use.

        ``where`` is the input partition the event came from (``(topic, partition)``),
        so that the state it touches can move with that partition (fleet mode).
        """
        ts = event.ts
        owner = event.owner
        seen = self._owner_clock.get(owner)
        if seen is not None and ts < seen - self.max_lateness_s:
            raise EventError(f"late: ts is {seen - ts:.0f}s behind {owner!r}'s event clock (max_lateness_s={self.max_lateness_s:g})")
        if seen is None or ts > seen:
            self._owner_clock[owner] = ts
            self._owner_clock.move_to_end(owner)
            if len(self._owner_clock) > self.max_series:
                self._owner_where.pop(self._owner_clock.popitem(last=False)[0], None)
        if where is not None:
            self._owner_where[owner] = where
            if ts > self.partition_clock.get(where, float("-inf")):
                self.partition_clock[where] = ts
            self.engine.where = where
        if ts > self.clock:
            self.clock = ts
        findings = self.engine.observe(event.type, event, ts)
        return self._stamped(self.lifecycle.advance(self._by_id, findings)) if findings else []

    def tick(self, now: float | None = None) -> list[Alert]:
        """Advance event time to ``now`` and re-evaluate every pending or firing alert.

        This is how alerts fire after ``for`` and resolve after ``keep_firing_for`` when
        no new event arrives for their series; a series silent for ``staleness_s`` counts
        as no longer matching, as a stale series does in Prometheus.

        An alert outlives its series' state by construction nowhere (eviction spares
        series with alerts; reloads and restores give them a fresh state); should one
        anyway, its condition counts as cleared and it resolves after ``keep_firing_for``
        instead of being re-sent forever (each such evaluation counted in
        ``orphans_resolved``). A fresh state
        without a verdict yet (after a reload or restore) counts as cleared once silent
        for ``staleness_s``.

        Every ``sweep_interval_s`` of event time the tick also evaluates every other
        series whose detector can judge a moment without a new observation (``count <
        10`` over a window, a burn-rate bucket that closed): a condition that time alone
        makes true is found within one sweep, as a Prometheus evaluation interval would,
        at a cost bounded by one evaluation per series per sweep.
        """
        if now is not None and now > self.clock:
            self.clock = now
        now = self.clock
        findings: list[Finding] = []
        active = self.lifecycle.active
        for skey in list(active):
            state = self.engine.series(skey)
            if state is None:
                self.orphans_resolved += 1
                findings.append(Finding(skey[0], skey[1], now, _LOST))
                continue
            at = self._judge_time(state, now)
            if state.last_score is None:
                if at - state.last_ts > self.staleness_s:
                    findings.append(Finding(skey[0], skey[1], at, _inactive(_NO_VERDICT)))
                continue
            if at - state.last_ts > self.staleness_s:
                score = _inactive(state.last_score)
            else:
                evaluate = getattr(state.detector, "evaluate", None)
                score = evaluate(at) if evaluate is not None else state.last_score
            findings.append(Finding(skey[0], skey[1], max(at, state.last_ts), score))
        # sweep at the interval's boundary, not at ``now``: the same events give the same
        # sweep times whatever the batch boundaries (replays stay exact); a held
        # partition's series sweep at its own clock's boundaries
        due: dict[Any, float | None] = {}
        for where in self.held:
            clock = self.partition_clock.get(where, float("-inf"))
            if clock == float("-inf") or clock < self._next_sweep_of.get(where, float("-inf")):
                due[where] = None
                continue
            due[where] = clock - clock % self.sweep_interval_s
            self._next_sweep_of[where] = due[where] + self.sweep_interval_s  # type: ignore[operator]
        boundary = None
        if now >= self._next_sweep:
            boundary = now - now % self.sweep_interval_s
            self._next_sweep = boundary + self.sweep_interval_s
        if boundary is not None or any(b is not None for b in due.values()):
            findings.extend(self.engine.sweep(boundary, self.staleness_s, skip=active, clocks=due or None))
        return self._stamped(self.lifecycle.advance(self._by_id, findings))

    def reload(self, rules: RuleSet) -> list[Alert]:
        """Swap rules in place; alerts of removed rules resolve now."""
        self.engine.swap_rules(rules)
        self.rules = rules
        self._by_id = rules.by_id()
        return self.lifecycle.forget_rules(self._by_id, self.clock)

    def _give_states_to_alerts(self, where: Any) -> None:
        """Every alert has a series state: a fresh one where a restore brought none.

        (A checkpointed series whose rule changed what it learns, or that could not be
        decoded, comes back without state while its alert comes back.)
        """
        for skey, tracked in self.lifecycle.active.items():
            if self.engine.series(skey) is None:
                rule = self._by_id.get(skey[0], tracked.rule)
                self.engine.revive(skey, rule, self.partition_clock.get(where, self.clock), where)

    def firing(self) -> list[Alert]:
        return self._stamped(self.lifecycle.firing())

    def _stamped(self, alerts: list[Alert]) -> list[Alert]:
        """Alerts stamped with event time now and their series' newest event.

        Verification after an action (actions/verify.py) runs on event time: re-sends
        carry the clock forward, and ``last_event_at`` tells a series that went quiet
        (an alert that resolved because nothing came, not because it recovered).
        """
        if not alerts or self.clock == float("-inf"):
            return alerts
        out = []
        for alert in alerts:
            state = self.engine.series((alert.rule_id, alert.series))
            last = state.last_ts if state is not None and math.isfinite(state.last_ts) else None
            out.append(replace(alert, at=self.clock, last_event_at=last))
        return out

    def _judge_time(self, state: Any, now: float) -> float:
        """The event time at which a series is judged without a new event of its own.

        The global clock, except for series of a ``held`` partition (one with a backlog,
        or with records lately: the runtime decides, see fleet.py): its events up to the
        global clock may still be unread, so judging it at that clock would expire its
        windows early and resolve (or, for "too few events" rules, fire) what its own
        events have not decided yet. Such a series is judged at its partition's clock.
        """
        where = getattr(state, "where", None)
        if where is not None and where in self.held:
            return self.partition_clock.get(where, now)
        return now

    # --- fleet mode: what one input partition owns (see partition_state.py) -------------
    def owners_of(self, where: Any) -> dict[str, float]:
        """Event clocks of the owners whose latest event came from partition ``where``."""
        return {o: self._owner_clock[o] for o, w in self._owner_where.items() if w == where and o in self._owner_clock}

    def adopt_partition(self, where: Any, clock: float, owners: dict[str, float]) -> None:
        """Take a restored partition's clocks; the global clock never moves back."""
        for owner, ts in owners.items():
            if ts > self._owner_clock.get(owner, float("-inf")):
                self._owner_clock[owner] = ts
                self._owner_where[owner] = where
        if clock > self.partition_clock.get(where, float("-inf")):
            self.partition_clock[where] = clock
        if clock > self.clock:
            self.clock = clock

    def forget_partition(self, where: Any) -> None:
        """Drop everything partition ``where`` owns: it was revoked (its checkpoint is written)."""
        self.detach_partition(where)

    def detach_partition(self, where: Any) -> DetachedPartition:
        """Take out everything partition ``where`` owns, as live objects (no encoding)."""
        active = self.lifecycle.active
        series = [(k, st) for k, st in self.engine.items() if st.where == where]
        alerts = {k: active.pop(k) for k, _ in series if k in active}
        self.engine.drop_where(where)
        owners = self.owners_of(where)
        for owner in [o for o, w in self._owner_where.items() if w == where]:
            del self._owner_where[owner]
            self._owner_clock.pop(owner, None)
        clock = self.partition_clock.pop(where, float("-inf"))
        self._next_sweep_of.pop(where, None)
        self.held.discard(where)
        return DetachedPartition(where, self.rules, series, alerts, owners, clock)

    def attach_partition(self, part: DetachedPartition) -> bool:
        """Put a detached partition back; False (and nothing done) if the rules changed since."""
        if part.rules is not self.rules:
            return False
        # alerts first: a series with an alert is never evicted to make room for another
        self.lifecycle.active.update(part.alerts)
        restored = {skey for skey, _ in part.series}
        for skey, state in part.series:
            self.engine.adopt(skey, state, keep=restored)
        self.adopt_partition(part.where, part.clock, part.owners)
        self._give_states_to_alerts(part.where)
        return True


@dataclass
class DetachedPartition:
    """One partition's live state out of a pipeline: kept across a rebalance that gives it back."""

    where: Any
    rules: RuleSet
    series: list[tuple[Any, Any]]
    alerts: dict[Any, Any]
    owners: dict[str, float]
    clock: float



_LOST = Score(0.0, False, float("nan"), {"state_lost": True})
_NO_VERDICT = Score(0.0, False, float("nan"), {})


def _inactive(score: Score) -> Score:
    evidence = dict(score.evidence)
    evidence["stale"] = True
    return Score(0.0, False, score.value, evidence)
