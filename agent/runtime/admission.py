"""Series admission: which new (rule, series) may take a place in the engine's bounded table.

Any producer chooses the label values a series key is made of, so a flood of invented
names must not push out what the engine has learned. The policy:

* **Budgets per source.** Each source with rules (``inference``, ``llm``, ``gpu``) owns a
  share of ``max_series`` (equal shares unless ``shares`` says otherwise). A flood on
  one topic only ever competes with that topic's series.
* **Proven and unproven.** A series is *proven* once its events span ``proven_s`` of
  event time (first to latest event); until then it is *unproven*. Age, not a count of
  observations: it costs nothing on the hot path (the engine keeps ``last_ts`` anyway)
  and one-shot or burst names never grow it. A restored series without a recorded birth
  counts as proven.
* **Who may be evicted.** When its source is at budget, a new series may take the place
  of an unproven series, or of a proven one silent for ``retain_s`` (a service that is
  gone), the idlest first. Never a series with a pending or firing alert, nor one whose
  verdict of the same event is not yet recorded by the alert lifecycle.
* **Refusal.** With nobody to evict, the new series is refused: it gets no state (its
  event still feeds every other series), and the refusal is counted per source. After a
  fruitless search the source refuses without searching for its next
  ``max(1, budget // 100)`` new series, so a flood costs a few dict lookups per event.
* A series with an alert, and a series restored from a checkpoint, is always admitted:
  the table may exceed its bound by the number of alerts (bounded by
  ``max_active_alerts``) and by what a rebalance hands over.

Pure and synchronous, like the engine that owns it; only called when a state is created
or leaves the table, never for an event of an existing series.
"""

from __future__ import annotations

import heapq
import operator
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SeriesAdmission"]

SeriesKey = tuple[str, tuple[str, ...]]
_LAST_TS = operator.attrgetter("last_ts")  # the idlest series first


@dataclass
class SeriesAdmission:
    """Per-source budgets and the bookkeeping behind them (counts, unproven series)."""

    max_series: int
    sources: Iterable[str]
    shares: Mapping[str, float] | None = None
    proven_s: float = 300.0
    retain_s: float = 86_400.0
    #: refusals per source since the caller last drained them, with one refused key each
    refused: Counter[str] = field(default_factory=Counter, init=False)
    refused_sample: dict[str, SeriesKey] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.proven_s < 0 or self.retain_s <= 0:
            raise ValueError(f"proven_s must be >= 0 and retain_s > 0, got {self.proven_s}, {self.retain_s}")
        self.budget = budgets(self.max_series, sorted(set(self.sources)), self.shares)
        self.count: Counter[str] = Counter()
        self._young: dict[str, dict[SeriesKey, Any]] = {s: {} for s in self.budget}
        self._skip: Counter[str] = Counter()  # new series to refuse before searching again
        self._next_stale: dict[str, float] = {}  # earliest event time a proven series may go stale

    # --- bookkeeping, called by the engine on every insert and removal ----------------
    def added(self, skey: SeriesKey, state: Any) -> None:
        source = state.rule.source
        self.count[source] += 1
        if not self.proven(state):
            self._young.setdefault(source, {})[skey] = state

    def removed(self, skey: SeriesKey, state: Any) -> None:
        source = state.rule.source
        self.count[source] -= 1
        young = self._young.get(source)
        if young is not None:
            young.pop(skey, None)

    def proven(self, state: Any) -> bool:
        return state.last_ts - state.born >= self.proven_s

    # --- decisions -----------------------------------------------------------------
    def full(self, source: str) -> bool:
        return self.count[source] >= self.budget.get(source, 1)

    def victims(
        self, source: str, now: float, table: Mapping[SeriesKey, Any], protected: Container[SeriesKey], busy: Container[SeriesKey]
    ) -> list[SeriesKey]:
        """Series of ``source`` whose places a new series may take; [] means refuse.

        ``protected`` (the alerts) and ``busy`` (verdicts in flight, series being
        restored) are never evicted. Returns a batch (up to 1 % of the budget, at most
        half of the candidates), so one search pays for the next new series too.
        """
        if self._skip[source] > 0:
            self._skip[source] -= 1
            return []
        budget = self.budget.get(source, 1)
        candidates = self._unproven(source, protected, busy)
        if not candidates and now >= self._next_stale.get(source, float("-inf")):
            candidates = self._stale(source, now, table, protected, busy)
        if not candidates:
            self._skip[source] = max(1, budget // 100) - 1
            return []
        count = max(1, min(budget // 100, len(candidates) // 2))
        return [(state.rule.id, state.key) for state in heapq.nsmallest(count, candidates, key=_LAST_TS)]

    def refuse(self, source: str, skey: SeriesKey) -> None:
        self.refused[source] += 1
        self.refused_sample[source] = skey

    # Both searches collect states (no tuple per series: allocations would wake the garbage
    # collector many times over a large table) and test keys with C-level containers.
    def _unproven(self, source: str, protected: Container[SeriesKey], busy: Container[SeriesKey]) -> list[Any]:
        young = self._young.get(source)
        if not young:
            return []
        proven_s = self.proven_s
        grown = [skey for skey, state in young.items() if state.last_ts - state.born >= proven_s]
        for skey in grown:
            del young[skey]  # grown up: from now on only its silence can make room
        return [state for skey, state in young.items() if skey not in protected and skey not in busy]

    def _stale(
        self, source: str, now: float, table: Mapping[SeriesKey, Any], protected: Container[SeriesKey], busy: Container[SeriesKey]
    ) -> list[Any]:
        """Proven series silent for ``retain_s``: a full scan, done again only when one may be due."""
        limit = now - self.retain_s
        mine = [st for skey, st in table.items() if st.rule.source == source and skey not in protected and skey not in busy]
        out = [st for st in mine if st.last_ts <= limit]
        oldest = min((st.last_ts for st in mine), default=float("inf"))
        self._next_stale[source] = float("-inf") if out else oldest + self.retain_s
        return out


def budgets(max_series: int, sources: list[str], shares: Mapping[str, float] | None) -> dict[str, int]:
    """Each source's number of series: its share of ``max_series``, at least 1.

    Sources named in ``shares`` get that fraction; the others split what is left equally.
    """
    shares = dict(shares or {})
    for source, share in shares.items():
        if not 0 < share <= 1:
            raise ValueError(f"the series share of {source!r} must be in (0, 1], got {share}")
    if sum(shares.values()) > 1 + 1e-9:
        raise ValueError(f"series shares add up to more than 1: {shares}")
    rest = [s for s in sources if s not in shares]
    left = max(0.0, 1.0 - sum(shares.values()))
    out = {s: max(1, int(max_series * shares[s])) for s in sources if s in shares}
    for s in rest:
        out[s] = max(1, int(max_series * left / len(rest)))
    return out
