"""Drift of a categorical series' mix against a reference, with false alarms budgeted in time."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from scipy.special import chdtrc, chdtri

from agent.errors import DetectorError
from agent.model import Score

from ._reference import MIN_REFERENCE, parse_window, source_label
from .base import Detector

__all__ = ["CategoryDrift"]

_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_DAY_S = 86_400.0
_OTHER = "(other)"
_LEARN_CAP = 64  # distinct categories counted while learning (at least); later newcomers count as other
_RATE_STEP = 1.05  # the threshold follows the event rate when it moves by more than 5 %
_RELEASE = 0.5  # an active verdict ends when the statistic falls under half the threshold


class CategoryDrift(Detector):
    """Detect a change in the mix of a categorical feature or predicted class.

    Use it on categorical model inputs (country, device, channel) and on class
    predictions. The reference is the category counts of the first ``reference_size``
    events, of the events of a named ``reference_window`` of event time, or fixed
    ``reference`` counts (a rule's ``reference_file``, counted by the rules layer).
    The most frequent ``max_categories - 1`` reference categories keep their own cell;
    the rest, and categories never seen in the reference, share an "(other)" cell whose
    reference share is the folded categories' plus the Good-Turing estimate of unseen
    mass (reference categories seen once, over the reference size). After every event the
    counts of the last ``window_size`` events are compared with the reference shares by
    a likelihood-ratio (G) test, divided by ``1 + window_size / reference_n`` because the
    reference shares are themselves estimates; ``G`` is chi-square with ``cells - 1``
    degrees of freedom when the mix is unchanged, and stays well behaved for rare cells.
    The verdict is active while ``G`` is over the threshold (until it falls under half
    of it); its value is the total variation distance between the two mixes.

    False alarms are budgeted in time: at most one per ``false_alarm_days`` at the
    series' event rate ``r`` (events per second of event time, estimated online). One
    test per event gives ``r * false_alarm_days * 86400`` tests per period, so each uses
    ``alpha = 1 / (r * false_alarm_days * 86400)`` (tests every ``k`` events would use
    ``k`` times that); the union bound then allows at most one expected false alarm per
    period, and the overlap of consecutive windows makes it conservative. Example:
    1 event/s over 30 days is 2.6e6 tests, ``alpha = 3.9e-7``, and with 4 cells the
    threshold is ``G = 32.6``.

    Parameters
    ----------
    reference_size
        Number of first events learned as the reference when ``reference`` is empty.
    reference
        Fixed reference counts as ``(category, count)`` pairs, used from the first event;
        ``reference_size`` is then ignored.
    reference_window
        ``[start, end]`` (RFC 3339 times or epoch seconds): the events of this period of
        event time are the reference, earlier ones are not learned, and the first event
        at or after ``end`` completes it. If the period passed before the series began,
        the first ``reference_size`` events are learned instead (the evidence's
        ``reference_source`` says which).
    false_alarm_days
        The false-alarm budget: at most one false drift alert per this many days at the
        series' event rate.
    window_size
        Number of most recent events whose mix is compared with the reference.
    max_categories
        Cells compared, the "(other)" cell included (at least 2).

    Examples
    --------
    >>> import random
    >>> from detectors.category_drift import CategoryDrift
    >>> rng = random.Random(3)
    >>> before = rng.choices(["DE", "US", "FR"], weights=[5, 3, 2], k=1500)
    >>> after = rng.choices(["DE", "US", "FR"], weights=[2, 3, 5], k=500)
    >>> det = CategoryDrift(reference_size=1000)
    >>> first = next(i for i, x in enumerate(before + after) if det.update(x, ts=float(i)).active)
    >>> first
    1644

    References
    ----------
    Agresti, A. (2013). Categorical Data Analysis, 3rd ed. Wiley (the likelihood-ratio
    chi-square statistic G).
    Good, I. J. (1953). The population frequencies of species and the estimation of
    population parameters. Biometrika 40(3/4), 237-264.

    """

    kind = "category_drift"
    observes = "category"

    def __init__(
        self,
        *,
        reference_size: int = 5000,
        reference: tuple[tuple[str, int], ...] = (),
        reference_window: tuple | None = None,
        false_alarm_days: float = 30.0,
        window_size: int = 200,
        max_categories: int = 16,
    ) -> None:
        if isinstance(reference_size, bool) or not isinstance(reference_size, int) or reference_size < 10:
            raise DetectorError(f"reference_size must be an integer >= 10, got {reference_size!r}")
        pairs = _pairs(reference)
        if reference and sum(c for _, c in pairs) < 10:
            raise DetectorError("reference counts must add up to at least 10 events")
        if isinstance(false_alarm_days, bool) or not isinstance(false_alarm_days, (int, float)) \
                or not math.isfinite(false_alarm_days) or false_alarm_days <= 0:
            raise DetectorError(f"false_alarm_days must be a positive number of days, got {false_alarm_days!r}")
        if isinstance(window_size, bool) or not isinstance(window_size, int) or not 10 <= window_size <= 100_000:
            raise DetectorError(f"window_size must be an integer between 10 and 100000, got {window_size!r}")
        if isinstance(max_categories, bool) or not isinstance(max_categories, int) or not 2 <= max_categories <= 256:
            raise DetectorError(f"max_categories must be an integer between 2 and 256, got {max_categories!r}")
        self.reference_size = reference_size
        self.reference = pairs
        self.reference_window = parse_window(reference_window)
        self.false_alarm_days = float(false_alarm_days)
        self.window_size = window_size
        self.max_categories = max_categories
        # n log n for every count a window cell can hold: the G statistic is table lookups
        self._nlogn = [0.0] + [k * math.log(k) for k in range(1, window_size + 1)]
        self._fresh()

    def _fresh(self) -> None:
        self._n = 0
        self._t0 = self._t1 = math.nan
        self._learned: dict[str, int] = {}
        self._learned_other = 0
        self._cells: list[str] = []  # reference categories with a cell; the last is (other)
        self._index: dict[str, int] = {}
        self._ref_counts: list[int] = []
        self._log_e: list[float] = []
        self._share: list[float] = []
        self._window: deque[str] = deque(maxlen=self.window_size)
        self._counts: list[int] = []
        self._rate_used = 0.0
        self._crit = math.inf
        self._scale = 0.0
        self._active = False
        self._skipped = 0  # events before the reference window: not learned
        self._window_over = False
        self._from_window = False
        if self.reference:
            self._finish_reference(dict(self.reference), 0)

    def update(self, x: str, ts: float) -> Score:
        x = str(x)
        self._n += 1
        if self._n == 1:
            self._t0 = self._t1 = ts
        elif ts > self._t1:
            self._t1 = ts
        window = self._window
        if len(window) == self.window_size and self._cells:
            self._counts[self._cell(window[0])] -= 1
        window.append(x)
        if not self._cells and self.reference_window is not None and not self._window_over:
            start, end = self.reference_window
            if ts < end:
                if ts < start:
                    self._skipped += 1
                else:
                    self._learn(x)
                return Score(0.0, False, 0.0, _QUIET)
            self._window_over = True
            if sum(self._learned.values()) + self._learned_other >= MIN_REFERENCE:
                self._finish_reference(self._learned, self._learned_other)  # counts the window, x included
                self._from_window = True
                self._counts[self._cell(x)] -= 1  # counted again below
        if not self._cells:
            self._learn(x)
            if self._n - self._skipped >= self.reference_size:
                self._finish_reference(self._learned, self._learned_other)
            return Score(0.0, False, 0.0, _QUIET)
        self._counts[self._cell(x)] += 1
        if len(window) < self.window_size:
            return Score(0.0, False, 0.0, _QUIET)
        rate = max(self._n - 1, 1) / max(self._t1 - self._t0, 1.0)
        if rate > self._rate_used * _RATE_STEP or rate * _RATE_STEP < self._rate_used:
            self._calibrate(rate)
        nlogn, counts = self._nlogn, self._counts
        g = 0.0
        for j, lg in enumerate(self._log_e):
            o = counts[j]
            if o:
                g += nlogn[o] - o * lg
        g = max(g * self._scale, 0.0)
        ratio = g / self._crit
        distance = self._distance()
        if ratio < (_RELEASE if self._active else 1.0):
            self._active = False
            return Score(min(ratio, 1.0), False, distance, _QUIET)
        self._active = True
        return Score(min(ratio, 1.0), True, distance, self._evidence(g, distance))

    def _learn(self, x: str) -> None:
        if x in self._learned or len(self._learned) < max(_LEARN_CAP, 2 * self.max_categories):
            self._learned[x] = self._learned.get(x, 0) + 1
        else:
            self._learned_other += 1

    def _cell(self, x: str) -> int:
        return self._index.get(x, len(self._cells) - 1)

    # --- the reference and the threshold -----------------------------------------------
    def _finish_reference(self, counts: Mapping[str, int], other: int, singletons: int | None = None) -> None:
        ranked = sorted(((k, c) for k, c in counts.items() if c > 0), key=lambda kv: (-kv[1], kv[0]))
        keep = ranked[: self.max_categories - 1]
        folded = other + sum(c for _, c in ranked[self.max_categories - 1 :])
        total = sum(counts.values()) + other
        if singletons is None:
            singletons = sum(1 for _, c in ranked if c == 1)
        self._singletons = singletons
        unseen = max(singletons, 0.5)  # Good-Turing: unseen mass ~ categories seen once
        self._cells = [k for k, _ in keep] + [_OTHER]
        self._index = {k: j for j, (k, _) in enumerate(keep)}
        self._ref_counts = [c for _, c in keep] + [folded]
        shares = [c / total for _, c in keep] + [(folded + unseen) / total]
        norm = sum(shares)
        self._share = [s / norm for s in shares]
        self._log_e = [math.log(self.window_size * s) for s in self._share]
        self._scale = 2.0 / (1.0 + self.window_size / total)  # G, discounted for the reference's own noise
        self._counts = [0] * len(self._cells)
        for x in self._window:
            self._counts[self._cell(x)] += 1
        self._learned, self._learned_other = {}, 0
        self._rate_used = 0.0  # calibrate at the next test

    def _calibrate(self, rate: float) -> None:
        self._rate_used = rate
        alpha = 1.0 / (rate * self.false_alarm_days * _DAY_S)
        self._crit = float(chdtri(len(self._cells) - 1, min(alpha, 0.5)))

    # --- evidence and reports --------------------------------------------------------
    def _distance(self) -> float:
        w = len(self._window)
        return 0.5 * sum(abs(o / w - s) for o, s in zip(self._counts, self._share, strict=True))

    def _evidence(self, g: float, distance: float) -> dict[str, Any]:
        w = len(self._window)
        df = len(self._cells) - 1
        return {
            "statistic": g, "threshold": self._crit, "df": df, "p_value": float(chdtrc(df, g)),
            "alpha_per_test": 1.0 / (self._rate_used * self.false_alarm_days * _DAY_S),
            "distance_tv": distance, "rate_per_s": self._rate_used, "false_alarm_days": self.false_alarm_days,
            "reference_n": sum(self._ref_counts), "window_size": w,
            "reference_source": source_label(bool(self.reference), self.reference_window, self._from_window, self.reference_size),
            "reference_top": _top(self._cells, self._share), "current_top": _top(self._cells, [o / w for o in self._counts]),
        }

    def report_samples(self) -> tuple[list[str], list[str]]:
        """The reference (at most 1000 values, rebuilt from its counts) and the current window."""
        if not self._cells:
            return [], list(self._window)
        total = sum(self._ref_counts)
        scale = min(1.0, 1000 / total)
        reference = [k for k, c in zip(self._cells, self._ref_counts, strict=True) for _ in range(round(c * scale))]
        current = [x if x in self._index else _OTHER for x in self._window]
        return reference, current

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"reference_size": 100, "window_size": 50}

    @classmethod
    def _unit_test_stream(cls, seed: int, n: int = 400) -> list[tuple[float, Any]]:
        """Categories whose mix changes at the midpoint (DE/US/FR 6:3:1 -> 1:3:6)."""
        import random

        rng = random.Random(seed)
        mixes = ([6, 3, 1], [1, 3, 6])
        return [(float(i), rng.choices(["DE", "US", "FR"], weights=mixes[i >= n // 2])[0]) for i in range(n)]

    # --- checkpoints ------------------------------------------------------------------
    def _dump(self) -> Any:
        fixed = bool(self.reference)
        return {
            "n": self._n, "t0": _num(self._t0), "t1": _num(self._t1), "window": list(self._window),
            "learned": self._learned, "learned_other": self._learned_other,
            "reference": None if fixed or not self._cells else [self._cells[:-1], self._ref_counts, self._singletons],
            "rate_used": self._rate_used, "active": self._active,
            "window_state": [self._skipped, self._window_over, self._from_window],
        }

    def _load(self, state: Any) -> None:
        self._fresh()
        self._n = int(state["n"])
        self._t0 = math.nan if state["t0"] is None else float(state["t0"])
        self._t1 = math.nan if state["t1"] is None else float(state["t1"])
        self._window.extend(str(x) for x in state["window"])
        if state["reference"] is not None:
            names, counts, singletons = state["reference"]
            self._finish_reference(dict(zip(names, counts[:-1], strict=True)), int(counts[-1]), int(singletons))
        elif self._cells:
            self._counts = [0] * len(self._cells)
            for x in self._window:
                self._counts[self._cell(x)] += 1
        self._learned = {str(k): int(v) for k, v in state["learned"].items()}
        self._learned_other = int(state["learned_other"])
        if state["rate_used"]:
            self._calibrate(float(state["rate_used"]))
        self._active = bool(state["active"])
        skipped, over, from_window = state.get("window_state", (0, False, False))
        self._skipped, self._window_over, self._from_window = int(skipped), bool(over), bool(from_window)


def _pairs(reference: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(reference, (tuple, list)):
        raise DetectorError("reference must be a list of [category, count] pairs")
    out = []
    for item in reference:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DetectorError(f"reference must be a list of [category, count] pairs, got {item!r}")
        name, count = item
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise DetectorError(f"reference count of {name!r} must be a non-negative integer, got {count!r}")
        out.append((str(name), count))
    if len({n for n, _ in out}) != len(out):
        raise DetectorError("reference names a category twice")
    return tuple(out)


def _top(cells: list[str], shares: list[float], k: int = 5) -> str:
    ranked = sorted(zip(cells, shares, strict=True), key=lambda cs: -cs[1])[:k]
    return ", ".join(f"{c} {s:.0%}" for c, s in ranked)


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None
