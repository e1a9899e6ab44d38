"""The rule engine: each event goes to the rules it fits, each (rule, series) to its detector.

Detector state is created lazily on a series' first event and kept in one bounded
table. Who gets a place when a source's share of the table is full is decided by
``admission.py``: a new series may only take the place of an unproven or long-silent
one, never of a series with a pending or firing alert or with a verdict not yet
recorded by the alert lifecycle, so no alert ever outlives its state; with nobody to
evict, the new series is refused (no state, counted). Existing series never pay for it.

Event time rule (stated once, here): a series' clock only moves forward. An event older
than its series' clock is evaluated at that clock (so windows stay ordered), and the
pipeline rejects events more than ``max_lateness_s`` behind their owner's clock before
they reach the engine (they go to the dead-letter topic, reason ``late``).
"""

from __future__ import annotations

import operator
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from agent.model import Finding, Score
from agent.rules import Rule, RuleSet
from agent.rules.fields import EVENT_TYPES, field_getter
from detectors.base import Detector

from .admission import SeriesAdmission

__all__ = ["RuleEngine", "SeriesState"]

SeriesKey = tuple[str, tuple[str, ...]]
_TIMING_SAMPLE_EVERY = 64
_SHAPE_CACHE_ENTRIES = 65_536
_NO_FINDINGS: tuple[Finding, ...] = ()
_NOTHING: frozenset[SeriesKey] = frozenset()


class _Slot:
    """One rule's series as seen by one event shape, resolved once for the hot loop.

    ``state`` points straight at the series' state (None until its first observation,
    or after the state was evicted, replaced or dropped: the engine unlinks every slot of
    a state that leaves the table, so a slot never feeds an orphan).
    """

    __slots__ = ("rule", "observe", "key", "skey", "state")

    def __init__(self, rule: Rule, observe: Callable[[Any], Any], key: tuple[str, ...], state: SeriesState | None) -> None:
        self.rule = rule
        self.observe = observe
        self.key = key
        self.skey: SeriesKey = (rule.id, key)
        self.state = state


class _Shapes:
    """Which (rule, series) states an event feeds, memoised on the fields that decide it.

    Matchers read only their own field and a series key only its ``by`` fields, so the
    states an event updates are a function of the values of those fields (service,
    model, ...), which have few distinct combinations: one dict lookup per event
    replaces running every rule's matchers, building every series key and looking each
    state up in the table. Each entry keeps pre-resolved slots (see ``_Slot``).
    """

    def __init__(self, rules: RuleSet) -> None:
        #: per source: the reader of its deciding fields, its rules, and shape -> slots
        self.sources: dict[str, tuple[Callable[[Any], Any], tuple[tuple[Rule, Callable[[Any], Any]], ...], dict[Any, tuple[_Slot, ...]]]] = {}
        for source in {r.source for r in rules.rules}:
            source_rules = rules.for_source(source)
            names = sorted({name for r in source_rules for name in (*r.match_fields, *r.by)})
            self.sources[source] = (_shape_reader(source, names), tuple((r, _observer(r)) for r in source_rules), {})

    def entries(self) -> int:
        return sum(len(cache) for _, _, cache in self.sources.values())

    def clear(self) -> None:
        for _, _, cache in self.sources.values():
            cache.clear()

    def resolve(self, source: str, event: Any, table: Mapping[SeriesKey, SeriesState]) -> tuple[_Slot, ...]:
        """Build the slots of the event's shape (a cache miss)."""
        _, rules, _ = self.sources[source]
        slots = []
        for rule, observe in rules:
            if rule.matches(event):
                key = rule.series(event)
                state = table.get((rule.id, key))
                slot = _Slot(rule, observe, key, state)
                if state is not None:
                    state.slots.append(slot)
                slots.append(slot)
        return tuple(slots)


def _shape_reader(source: str, names: list[str]) -> Callable[[Any], Any]:
    """One call that reads every deciding field: ``attrgetter`` in C when all are plain
    attributes of the event model (fields or properties), else each field's own reader."""
    if not names:
        return lambda event: ()
    model = EVENT_TYPES.get(source)
    if model is not None and all(n in model.model_fields or isinstance(getattr(model, n, None), property) for n in names):
        return operator.attrgetter(*names)
    getters = tuple(field_getter(n) for n in names)
    return lambda event: tuple(get(event) for get in getters)


def _observer(rule: Rule) -> Callable[[Any], Any]:
    """``rule.observe`` specialised once per rule, with the same results.

    A required ``float`` field of the event model is always a float once validated, so
    its reader is a bare ``attrgetter`` (no Python frame); an ``equals`` on a required
    string field (``status``) is one comparison; the rest take ``rule.observe``'s checks.
    """
    if rule._categorical or rule._vector:  # noqa: SLF001 - the engine owns the hot path
        return rule.observe
    get = rule._field_getter  # noqa: SLF001
    assert get is not None
    info = EVENT_TYPES[rule.source].model_fields.get(rule.field) if rule.source in EVENT_TYPES else None
    required = info is not None and info.is_required()
    if rule.equals is not None:
        if not (required and _is_text(info.annotation)):  # type: ignore[union-attr]
            return rule.observe
        equals = rule.equals

        def indicator(event: Any) -> float:
            return 1.0 if get(event) == equals else 0.0

        return indicator
    if required and info.annotation is float:  # type: ignore[union-attr]
        return operator.attrgetter(rule.field)

    def numeric(event: Any) -> float | None:
        raw = get(event)
        if raw.__class__ is float:
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        return None

    return numeric


def _is_text(annotation: Any) -> bool:
    """A field that validates to ``str`` only, so ``==`` is ``rule.observe``'s ``str(raw) ==``."""
    if annotation is str:
        return True
    return get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation))


@dataclass(slots=True)
class SeriesState:
    """What the engine remembers of one (rule, series): its detector and last verdict."""

    rule: Rule
    key: tuple[str, ...]
    detector: Detector
    last_ts: float = float("-inf")
    last_score: Score | None = None
    where: Any = None  # the input partition of its latest event: fleet mode moves the state with it
    born: float = float("-inf")  # event time of its first event (-inf: restored, unknown: proven)
    slots: list[_Slot] = field(default_factory=list, repr=False)  # the engine's shortcuts to it

    def unlink(self) -> None:
        """Cut the engine's shortcuts: the state left the table (evicted, replaced, dropped)."""
        for slot in self.slots:
            slot.state = None
        self.slots.clear()


@dataclass
class RuleEngine:
    """Dispatches events to rules and series; pure, synchronous, bounded."""

    rules: RuleSet
    max_series: int = 100_000
    protected: Container[SeriesKey] = field(default_factory=frozenset)
    #: admission policy (admission.py): per-source shares of max_series, when a series is
    #: proven, how long a silent proven series keeps its place
    shares: Mapping[str, float] | None = None
    proven_s: float = 300.0
    retain_s: float = 86_400.0
    _table: OrderedDict[SeriesKey, SeriesState] = field(default_factory=OrderedDict, init=False)
    evicted: int = field(default=0, init=False)
    timings: list[tuple[str, float]] = field(default_factory=list, init=False)
    _updates: int = field(default=0, init=False)
    _events: int = field(default=0, init=False)
    #: the input partition of the events being observed (set by the pipeline, fleet mode)
    where: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {self.max_series}")
        self._shapes = _Shapes(self.rules)
        self.admission = self._new_admission(self.rules)

    def _new_admission(self, rules: RuleSet) -> SeriesAdmission:
        sources = {r.source for r in rules.rules}
        return SeriesAdmission(self.max_series, sources, self.shares, self.proven_s, self.retain_s)

    def __len__(self) -> int:
        return len(self._table)

    def series(self, key: SeriesKey) -> SeriesState | None:
        return self._table.get(key)

    def swap_rules(self, rules: RuleSet) -> None:
        """Take new rules; series of unchanged rules keep their learned state.

        A rule counts as unchanged when its id, detector, parameters, observed field
        and series key are the same. Anything else starts from a fresh detector.
        A series with an alert whose rule changed what it learns keeps a place with a fresh
        detector (and no verdict yet): its alert is judged again, never left without state.
        """
        old = self.rules.by_id()
        new = rules.by_id()
        kept: OrderedDict[SeriesKey, SeriesState] = OrderedDict()
        admission = self._new_admission(rules)
        for key, state in self._table.items():
            state.slots.clear()  # the old shapes go with the old rules
            rule = new.get(key[0])
            if rule is None:
                continue
            if not _same_learning(old[key[0]], rule):
                if key not in self.protected:
                    continue
                state = SeriesState(rule, state.key, rule.new_detector(), state.last_ts, None, state.where, state.born)
            state.rule = rule
            kept[key] = state
            admission.added(key, state)
        admission.refused.update(self.admission.refused)
        admission.refused_sample.update(self.admission.refused_sample)
        self._table = kept
        self.rules = rules
        self._shapes = _Shapes(rules)
        self.admission = admission

    def observe(self, source: str, event: Any, ts: float) -> Sequence[Finding]:
        """Update every matching rule's series; return the findings worth a lifecycle step.

        A finding is returned when the verdict is active or when the series already has
        an alert (so that the alert can be resolved); quiet series produce nothing.
        """
        entry = self._shapes.sources.get(source)
        if entry is None:
            return _NO_FINDINGS
        read, _, cache = entry
        shape = read(event)
        slots = cache.get(shape)
        if slots is None:
            slots = cache[shape] = self._resolve(source, event)
        findings: list[Finding] | None = None  # most events find nothing: no list for them
        protected = self.protected
        where = self.where
        self._events += 1
        timed = not self._events % _TIMING_SAMPLE_EVERY
        updates = 0
        for slot in slots:
            x = slot.observe(event)
            if x is None:
                continue
            state = slot.state
            if state is None:
                state = self._attach(slot, ts, findings)
                if state is None:  # refused a place: its other series still learn
                    continue
            state.where = where
            if ts > state.last_ts:
                state.last_ts = ts
            updates += 1
            if timed:
                t0 = time.perf_counter()
                score = state.detector.update(x, state.last_ts)
                self.timings.append((slot.rule.detector_class.kind, time.perf_counter() - t0))
            else:
                score = state.detector.update(x, state.last_ts)
            state.last_score = score
            if score.active or (protected and slot.skey in protected):
                if findings is None:
                    findings = []
                findings.append(Finding(slot.rule.id, slot.key, state.last_ts, score))
        self._updates += updates
        return findings or _NO_FINDINGS

    def _resolve(self, source: str, event: Any) -> tuple[_Slot, ...]:
        if self._shapes.entries() >= _SHAPE_CACHE_ENTRIES:
            self._shapes.clear()
            for state in self._table.values():
                state.slots.clear()
        return self._shapes.resolve(source, event, self._table)

    def _attach(self, slot: _Slot, ts: float, findings: list[Finding] | None) -> SeriesState | None:
        """Link the slot to its state: one another shape already made, else a fresh one.

        None when the series is refused a place (see admission.py); the slot stays empty
        and asks again on the series' next event, cheaply while its source is full.
        ``findings``: the verdicts of this event so far, not yet recorded as alerts, so
        their series are not evicted to make room.
        """
        skey = slot.skey
        state = self._table.get(skey)
        if state is None:
            source = slot.rule.source
            admission = self.admission
            if admission.full(source) and skey not in self.protected:
                busy = {(f.rule_id, f.series) for f in findings} if findings else _NOTHING
                gone = admission.victims(source, ts, self._table, self.protected, busy)
                if not gone:
                    admission.refuse(source, skey)
                    return None
                self._remove(gone)
            state = SeriesState(slot.rule, slot.key, slot.rule.new_detector(), ts, None, self.where, ts)
            self._table[skey] = state
            admission.added(skey, state)
        slot.state = state
        state.slots.append(slot)
        return state

    def _remove(self, keys: Sequence[SeriesKey]) -> None:
        """Evict these series: out of the table, the budgets and every slot."""
        for skey in keys:
            state = self._table.pop(skey)
            self.admission.removed(skey, state)
            state.unlink()
        self.evicted += len(keys)

    def drain_refused(self) -> dict[str, tuple[int, SeriesKey]]:
        """Refusals per source since the last call, each with one refused key (for a log line)."""
        admission = self.admission
        out = {source: (n, admission.refused_sample[source]) for source, n in admission.refused.items() if n}
        admission.refused.clear()
        admission.refused_sample.clear()
        return out

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

    def adopt(self, skey: SeriesKey, state: SeriesState, keep: Container[SeriesKey] = _NOTHING) -> None:
        """Take a restored series (it replaces any state of the same key).

        A restored series is never refused: over its source's budget it takes the place
        of unproven or long-silent series not in ``protected`` or ``keep`` if there are
        any, else the table holds more than its bound until series leave.
        """
        old = self._table.pop(skey, None)
        if old is not None:
            self.admission.removed(skey, old)
            old.unlink()
        state.slots.clear()
        source = state.rule.source
        if self.admission.full(source):
            gone = self.admission.victims(source, state.last_ts, self._table, self.protected, keep)
            self._remove(gone)
        self._table[skey] = state
        self.admission.added(skey, state)

    def revive(self, skey: SeriesKey, rule: Rule, ts: float, where: Any) -> SeriesState:
        """A fresh state for a series that must have one (it has an alert), whatever the budget."""
        state = self._table.get(skey)
        if state is None:
            state = SeriesState(rule, skey[1], rule.new_detector(), ts, None, where)
            self._table[skey] = state
            self.admission.added(skey, state)
        return state

    def drop_where(self, where: Any) -> int:
        """Forget every series whose latest event came from partition ``where``."""
        gone = [skey for skey, state in self._table.items() if state.where == where]
        for skey in gone:
            state = self._table.pop(skey)
            self.admission.removed(skey, state)
            state.unlink()
        return len(gone)


def _same_learning(a: Rule, b: Rule) -> bool:
    return (
        a.detector_class is b.detector_class
        and dict(a.detector_params) == dict(b.detector_params)
        and a.field == b.field
        and a.equals == b.equals
        and a.by == b.by
    )
