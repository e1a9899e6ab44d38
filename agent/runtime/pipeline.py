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
    sweep_interval_s: float = 15.0
    clock: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        if self.staleness_s <= 0 or self.max_lateness_s < 0:
            raise ValueError("staleness_s must be > 0 and max_lateness_s >= 0")
        self.lifecycle = AlertLifecycle()
        self.engine = RuleEngine(self.rules, self.max_series, protected=self.lifecycle.active)
        self._by_id: dict[str, Rule] = self.rules.by_id()
        self._owner_clock: OrderedDict[str, float] = OrderedDict()
        self._next_sweep = float("-inf")
        # fleet mode (partition_state.py): which input partition each owner's latest event
        # came from, each partition's own event clock, and the partitions with a backlog,
        # whose alerts are judged at their own clock rather than at the global one
        self._owner_where: dict[str, Any] = {}
        self.partition_clock: dict[Any, float] = {}
        self.held: set[Any] = set()

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
        return self.lifecycle.advance(self._by_id, findings) if findings else []

    def tick(self, now: float | None = None) -> list[Alert]:
        """Advance event time to ``now`` and re-evaluate every pending or firing alert.

        This is how alerts fire after ``for`` and resolve after ``keep_firing_for`` when
        no new event arrives for their series; a series silent for ``staleness_s`` counts
        as no longer matching, as a stale series does in Prometheus.

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
            if state is None or state.last_score is None:
                continue
            at = self._judge_time(state, now)
            if at - state.last_ts > self.staleness_s:
                score = _inactive(state.last_score)
            else:
                evaluate = getattr(state.detector, "evaluate", None)
                score = evaluate(at) if evaluate is not None else state.last_score
            findings.append(Finding(skey[0], skey[1], max(at, state.last_ts), score))
        if now >= self._next_sweep:
            # sweep at the interval's boundary, not at ``now``: the same events give the
            # same sweep times whatever the batch boundaries (replays stay exact)
            boundary = now - now % self.sweep_interval_s
            self._next_sweep = boundary + self.sweep_interval_s
            skip = _SkipHeld(active, self.engine, self.held) if self.held else active
            findings.extend(self.engine.sweep(boundary, self.staleness_s, skip=skip))
        return self.lifecycle.advance(self._by_id, findings)

    def reload(self, rules: RuleSet) -> list[Alert]:
        """Swap rules in place; alerts of removed rules resolve now."""
        self.engine.swap_rules(rules)
        self.rules = rules
        self._by_id = rules.by_id()
        return self.lifecycle.forget_rules(self._by_id, self.clock)

    def firing(self) -> list[Alert]:
        return self.lifecycle.firing()

    def _judge_time(self, state: Any, now: float) -> float:
        """The event time at which a series is judged without a new event of its own.

        The global clock, except for series of a partition with a backlog (``held``):
        its events up to the global clock are still unread, so judging it at that clock
        would expire its windows early and resolve (or, for "too few events" rules,
        fire) what its own events have not decided yet. Such a series is judged at its
        partition's clock until the partition has caught up.
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
        for skey in [k for k, st in self.engine.items() if st.where == where]:
            self.lifecycle.active.pop(skey, None)
        self.engine.drop_where(where)
        for owner in [o for o, w in self._owner_where.items() if w == where]:
            del self._owner_where[owner]
            self._owner_clock.pop(owner, None)
        self.partition_clock.pop(where, None)
        self.held.discard(where)


class _SkipHeld:
    """``skey in skip``: the series has an alert, or its partition has a backlog."""

    def __init__(self, active: Any, engine: RuleEngine, held: set[Any]) -> None:
        self._active, self._engine, self._held = active, engine, held

    def __contains__(self, skey: object) -> bool:
        if skey in self._active:
            return True
        state = self._engine.series(skey)  # type: ignore[arg-type]
        return state is not None and state.where in self._held


def _inactive(score: Score) -> Score:
    evidence = dict(score.evidence)
    evidence["stale"] = True
    return Score(0.0, False, score.value, evidence)
