"""The rule engine: each event goes to the rules it fits, each (rule, series) to its detector.

Detector state is created lazily on a series' first event and kept in one bounded
table. When the table is full, the idle series least recently seen is evicted, never
one with a pending or firing alert (its resolution would be lost).

Event time rule (stated once, here): a series' clock only moves forward. An event older
than its series' clock is evaluated at that clock (so windows stay ordered), and the
pipeline rejects events more than ``max_lateness_s`` behind their owner's clock before
they reach the engine (they go to the dead-letter topic, reason ``late``).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.model import Finding, Score
from agent.rules import Rule, RuleSet
from agent.rules.fields import field_getter
from detectors.base import Detector

__all__ = ["RuleEngine", "SeriesState"]

SeriesKey = tuple[str, tuple[str, ...]]
_TIMING_SAMPLE_EVERY = 64
_DISPATCH_CACHE_ENTRIES = 65_536


class _Dispatch:
    """Which rules an event matches, memoised on the fields the selectors read.

    Matchers read only their own field, so the matching rules are a function of the
    tuple of those fields' values (service, model, ...), which has few distinct values:
    one dict lookup per event replaces running every rule's regexes. Each hit is kept
    as pre-bound ``(rule, observe, series)`` triples so the per-rule loop of the hot
    path makes no attribute lookups.
    """

    def __init__(self, rules: RuleSet) -> None:
        self._sources: dict[str, tuple[tuple[Any, ...], tuple[Rule, ...], dict[tuple[Any, ...], tuple[_Bound, ...]]]] = {}
        bound = {r.id: (r, _observer(r), r.series) for r in rules.rules}
        self._bound = bound
        for source in {r.source for r in rules.rules}:
            source_rules = rules.for_source(source)
            names = sorted({name for r in source_rules for name in r.match_fields})
            self._sources[source] = (tuple(field_getter(n) for n in names), source_rules, {})

    def rules_for(self, source: str, event: Any) -> tuple[_Bound, ...]:
        entry = self._sources.get(source)
        if entry is None:
            return ()
        getters, rules, cache = entry
        key = tuple(get(event) for get in getters)
        hit = cache.get(key)
        if hit is None:
            hit = tuple(self._bound[r.id] for r in rules if r.matches(event))
            if len(cache) >= _DISPATCH_CACHE_ENTRIES:
                cache.clear()
            cache[key] = hit
        return hit


_Bound = tuple[Rule, Callable[[Any], Any], Callable[[Any], tuple[str, ...]]]


def _observer(rule: Rule) -> Callable[[Any], Any]:
    """``rule.observe`` specialised once per rule: the common numeric case is one getter call."""
    if rule._categorical or rule.equals is not None:  # noqa: SLF001 - the engine owns the hot path
        return rule.observe
    get = rule._field_getter  # noqa: SLF001
    assert get is not None

    def numeric(event: Any) -> float | None:
        raw = get(event)
        if raw.__class__ is float:
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        return None

    return numeric


@dataclass(slots=True)
class SeriesState:
    """What the engine remembers of one (rule, series): its detector and last verdict."""

    rule: Rule
    key: tuple[str, ...]
    detector: Detector
    last_ts: float = float("-inf")
    last_score: Score | None = None
    where: Any = None  # the input partition of its latest event: fleet mode moves the state with it


@dataclass
class RuleEngine:
    """Dispatches events to rules and series; pure, synchronous, bounded."""

    rules: RuleSet
    max_series: int = 100_000
    protected: Container[SeriesKey] = field(default_factory=frozenset)
    _table: OrderedDict[SeriesKey, SeriesState] = field(default_factory=OrderedDict, init=False)
    evicted: int = field(default=0, init=False)
    timings: list[tuple[str, float]] = field(default_factory=list, init=False)
    _updates: int = field(default=0, init=False)
    #: the input partition of the events being observed (set by the pipeline, fleet mode)
    where: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {self.max_series}")
        self._dispatch = _Dispatch(self.rules)

    def __len__(self) -> int:
        return len(self._table)

    def series(self, key: SeriesKey) -> SeriesState | None:
        return self._table.get(key)

    def swap_rules(self, rules: RuleSet) -> None:
        """Take new rules; series of unchanged rules keep their learned state.

        A rule counts as unchanged when its id, detector, parameters, observed field
        and series key are the same. Anything else starts from a fresh detector.
        """
        old = self.rules.by_id()
        new = rules.by_id()
        kept: OrderedDict[SeriesKey, SeriesState] = OrderedDict()
        for key, state in self._table.items():
            rule = new.get(key[0])
            if rule is not None and _same_learning(old[key[0]], rule):
                state.rule = rule
                kept[key] = state
        self._table = kept
        self.rules = rules
        self._dispatch = _Dispatch(rules)

    def observe(self, source: str, event: Any, ts: float) -> list[Finding]:
        """Update every matching rule's series; return the findings worth a lifecycle step.

        A finding is returned when the verdict is active or when the series already has
        an alert (so that the alert can be resolved); quiet series produce nothing.
        """
        findings: list[Finding] = []
        table = self._table
        protected = self.protected
        where = self.where
        for rule, observe, series in self._dispatch.rules_for(source, event):
            x = observe(event)
            if x is None:
                continue
            key = series(event)
            skey = (rule.id, key)
            state = table.get(skey)
            if state is None:
                state = SeriesState(rule, key, rule.new_detector(), ts, None, where)
                table[skey] = state
                if len(table) > self.max_series:
                    self._evict()
            else:
                state.where = where
                if ts > state.last_ts:
                    state.last_ts = ts
            self._updates += 1
            if self._updates % _TIMING_SAMPLE_EVERY:
                score = state.detector.update(x, state.last_ts)
            else:
                t0 = time.perf_counter()
                score = state.detector.update(x, state.last_ts)
                self.timings.append((rule.detector_class.kind, time.perf_counter() - t0))
            state.last_score = score
            if score.active or skey in protected:
                findings.append(Finding(rule.id, key, state.last_ts, score))
        return findings

    def sweep(
        self, now: float | None, staleness_s: float, skip: Container[SeriesKey], clocks: Mapping[Any, float | None] | None = None
    ) -> list[Finding]:
        """Evaluate, at event time ``now``, the fresh series not in ``skip`` that can be.

        Only detectors with ``evaluate`` take part; a series silent for ``staleness_s``
        is left alone (it no longer matches), and one with an event at or after ``now``
        already has a fresher verdict. Returns the findings that turned active.
        ``clocks`` (fleet mode): series of these partitions are evaluated at their
        partition's time instead (None: not this time), and ``now=None`` sweeps only them.
        """
        findings: list[Finding] = []
        for skey, state in self._table.items():
            at = now
            if clocks is not None and state.where in clocks:
                at = clocks[state.where]
            if at is None or skey in skip or state.last_ts >= at or at - state.last_ts > staleness_s:
                continue
            evaluate = getattr(state.detector, "evaluate", None)
            if evaluate is None:
                continue
            score = evaluate(at)
            state.last_score = score
            if score.active:
                findings.append(Finding(skey[0], skey[1], at, score))
        return findings

    # --- fleet mode: the series of one input partition (partition_state.py) -----------
    def items(self) -> Iterator[tuple[SeriesKey, SeriesState]]:
        return iter(list(self._table.items()))

    def adopt(self, skey: SeriesKey, state: SeriesState) -> None:
        """Take a restored series (it replaces any state of the same key)."""
        self._table[skey] = state
        if len(self._table) > self.max_series:
            self._evict()

    def drop_where(self, where: Any) -> int:
        """Forget every series whose latest event came from partition ``where``."""
        gone = [skey for skey, state in self._table.items() if state.where == where]
        for skey in gone:
            del self._table[skey]
        return len(gone)

    def _evict(self) -> None:
        """Drop the idlest series (oldest last event time), never one with an alert.

        One scan drops 1 % of the table, so the scan's cost is shared by the next 1 %
        of new series instead of an LRU reordering on every update.
        """
        count = max(1, len(self._table) // 100)
        protected = self.protected
        idle = heapq.nsmallest(
            count, (item for item in self._table.items() if item[0] not in protected), key=lambda item: item[1].last_ts
        )
        for skey, _ in idle:
            del self._table[skey]
        self.evicted += len(idle)
        # when every series has an alert, the table may exceed its bound rather than lose one


def _same_learning(a: Rule, b: Rule) -> bool:
    return (
        a.detector_class is b.detector_class
        and dict(a.detector_params) == dict(b.detector_params)
        and a.field == b.field
        and a.equals == b.equals
        and a.by == b.by
    )
