"""Sequential change detection per event: pages a clear fault in seconds, with its false-alarm
rate set in advance as a time budget per series."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.errors import DetectorError
from agent.model import Score

from ._sequential_baseline import Baseline, bucket_of, edge, wilson_upper
from .base import Detector

__all__ = ["Sequential"]

_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_MODELS = ("tail", "indicator")
_CLEAR_NATS = math.log(100.0)  # the verdict clears once every statistic is this far below h
_REFRESH_S = 1.0  # the baseline is re-read (limit, p0, h) at most once a second of event time...
_REFRESH_N = 256  # ... or every this many events, whichever comes first
_MAX_P1 = 0.99
_FREEZE_AT = 0.25  # the design is not re-read while a statistic is above this fraction of h
_RATE_GAIN = 0.01  # the event rate is an exponentially weighted mean of gaps over ~100 events


class Sequential(Detector):
    """CUSUM tests, event by event, of "more events than usual are bad" against a learned baseline.

    For paging on a clear fault within seconds with ``for: 0s``: each event is reduced to
    one bit, bad or not, and a bank of Bernoulli CUSUMs (Page 1954) accumulates the
    log-likelihood ratio of "a ratio ``p1 = factor * p0`` of events is bad" against the
    baseline ratio ``p0``, stopping as soon as the evidence reaches ``h`` nats. A bad event
    is a value above the baseline's ``quantile`` (``model: tail``, for latency: no
    distribution is assumed, ``p0`` is about ``1 - quantile`` by construction) or a 1 in an
    indicator (``model: indicator``, for errors with ``field: status, equals: error``:
    ``p0`` is the learned error ratio). The baseline is an exponentially decayed
    log-histogram or error count with half-life ``half_life_s``, learned only while the
    verdict is inactive and read again only while every statistic is below ``h / 4`` (so
    the first events of a fault do not move the test); ``p0`` is the upper end of its
    Wilson interval (z = 3), floored at ``min_ratio``, so a young or quiet baseline errs
    towards silence.

    The threshold comes from the false-alarm budget. The CUSUM of a true likelihood
    ratio has an average run length to a false alarm of at least ``e**h`` events
    (Lorden 1971; via Shiryaev-Roberts: ``R_n - n`` is a martingale and ``R >= e**W``),
    and with ``p0`` an upper bound on the true ratio the increments only get smaller.
    For ``k`` tests run together the mixture ``R/k`` gives ``ARL >= e**h / k``, so
    ``h = ln(k * false_alarm_days * 86400 * rate)`` with ``rate`` the series' learned
    events per second: 20.1 nats at 100 events/s, 15.5 at 1 event/s (two tests, 30 days).
    Time to detect is about ``h / KL`` events, where ``KL`` is the expected evidence per
    event, so it shrinks with a bigger fault (more bad events) and, in seconds, with more
    traffic: a tenfold latency step at 100 requests/s takes about 8 events (80 ms),
    errors going from 0.5 % to 20 % about 40 events (0.4 s); at 1 request/s the same
    faults take about 6 and 35 seconds.

    The verdict turns active when a statistic reaches ``h`` (statistics are capped at
    ``h``) and stays active while the series is abnormal; it clears once every statistic
    has fallen ``ln(100)`` nats below ``h`` (the data favour normal 100 to 1 since the
    alarm), so pair the rule with ``for: 0s`` and a ``keep_firing_for``. An active
    verdict's value is the estimated new level; its evidence gives the ``statistic`` and
    ``threshold`` (nats), the ``level`` (geometric mean of the values, or the error
    ratio, since the estimated change point, where the statistic last left 0), the
    ``baseline`` (median, or error ratio), the ``limit`` over which a value counts as bad
    (tail model), the ``ratio`` of bad events since the change against ``baseline_ratio``
    (``p0``) and ``design_ratio`` (the ``p1`` of the test that fired), the ``events`` and
    seconds (``detect_s``) the test took to fire, and the learned ``rate_per_s``.

    Cold start: no verdict (score 0) until the baseline holds ``min_baseline_count``
    events spanning ``min_baseline_s``; even then a young baseline's wide Wilson bound
    makes the test demand a larger fault. State stays under a few KB: the occupied
    histogram buckets (5 % wide, typically a few dozen) and five numbers per test.

    Parameters
    ----------
    model
        ``tail`` (a value above the baseline's ``quantile`` is bad: latency, durations)
        or ``indicator`` (the observation is 1 for a bad event, 0 for a good one).
    quantile
        Tail model: the baseline quantile a value must exceed to count as bad.
    factors
        Multiples of the baseline ratio ``p0`` the tests are designed for, one CUSUM
        each (``p1`` capped at 0.99): the smallest is the least change that pages quickly.
    false_alarm_days
        The false-alarm budget: on clean traffic, on average at most one false page per
        this many days per series.
    half_life_s
        Half-life in seconds of the baseline's memory.
    min_baseline_count
        Events the baseline must have learned before any verdict.
    min_baseline_s
        Event-time seconds the baseline must span before any verdict.
    min_ratio
        Floor of the baseline ratio ``p0``: a service that (nearly) never fails is
        treated as failing this often, so a handful of errors does not page.

    Examples
    --------
    100 requests a second, log-normal latency around 15 ms; ten times slower from t=600 s:

    >>> import random
    >>> from detectors.sequential import Sequential
    >>> rng = random.Random(7)
    >>> det = Sequential(model="tail")
    >>> stream = [(i / 100, rng.lognormvariate(2.7, 0.5) * (10 if i >= 60_000 else 1)) for i in range(61_000)]
    >>> first = next(i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active)
    >>> first - 60_000, det.update(150.0, 610.0).evidence["events"]
    (7, 8)

    References
    ----------
    Page, "Continuous inspection schemes", Biometrika 41 (1954): the CUSUM.
    Lorden, "Procedures for reacting to a change in distribution", Annals of
    Mathematical Statistics 42 (1971): ARL to false alarm >= e**h.
    Pollak, "Optimal detection of a change in distribution", Annals of Statistics 13
    (1985): the Shiryaev-Roberts martingale behind the bound.
    Wilson, "Probable inference...", JASA 22 (1927): the score interval of a proportion.
    """

    kind = "sequential"

    def __init__(
        self,
        *,
        model: str = "tail",
        quantile: float = 0.95,
        factors: tuple = (4.0, 16.0),
        false_alarm_days: float = 30.0,
        half_life_s: float = 1800.0,
        min_baseline_count: int = 300,
        min_baseline_s: float = 300.0,
        min_ratio: float = 0.001,
    ) -> None:
        if model not in _MODELS:
            raise DetectorError(f"model must be one of {', '.join(_MODELS)}, got {model!r}")
        self.model = model
        self.quantile = _number("quantile", quantile, 0.5, 1.0, open_high=True)
        if isinstance(factors, (str, bytes)) or not isinstance(factors, (tuple, list)) or not factors:
            raise DetectorError(f"factors must be a non-empty list of numbers > 1, e.g. [4, 16], got {factors!r}")
        self.factors = tuple(_number("factors", f, 1.0, 1e6, open_low=True) for f in factors)
        self.false_alarm_days = _number("false_alarm_days", false_alarm_days, 0.0, 1e6, open_low=True)
        self.half_life_s = _number("half_life_s", half_life_s, 0.0, 1e9, open_low=True)
        if isinstance(min_baseline_count, bool) or not isinstance(min_baseline_count, int) or min_baseline_count < 1:
            raise DetectorError(f"min_baseline_count must be an integer >= 1, got {min_baseline_count!r}")
        self.min_baseline_count = min_baseline_count
        self.min_baseline_s = _number("min_baseline_s", min_baseline_s, 0.0, 1e9)
        self.min_ratio = _number("min_ratio", min_ratio, 0.0, 0.5, open_low=True)
        self._tail = model == "tail"
        self._load(self._fresh())

    # --- state ------------------------------------------------------------------------
    def _fresh(self) -> dict[str, Any]:
        return {
            "ts": None, "t0": None, "step": None, "base": Baseline(self.half_life_s, self._tail).dump(),
            "design": None, "refreshed": [None, 0], "tests": [], "active": False, "fired": None,
        }  # fmt: skip

    def _dump(self) -> Any:
        state = {k: getattr(self, "_" + k) for k in _STATE_KEYS}
        state["base"] = self._base.dump()
        return state

    def _load(self, state: Any) -> None:
        for key in _STATE_KEYS:
            setattr(self, "_" + key, state[key])
        self._refreshed = list(self._refreshed)
        self._tests = [list(test) for test in self._tests]  # updated in place: never shared
        self._fired = None if self._fired is None else list(self._fired)
        base = Baseline(self.half_life_s, self._tail)
        base.load(state["base"])
        self._base = base

    # --- the Detector interface -----------------------------------------------------------
    def update(self, x: float, ts: float) -> Score:
        if not math.isfinite(x) or not math.isfinite(ts):
            return Score(0.0, False, x if math.isfinite(x) else math.nan, _QUIET)
        last = self._ts
        if last is not None and ts < last:
            ts = last  # event time only moves forward
        self._learn_rate(ts, last)
        self._ts = ts
        if self._t0 is None:
            self._t0 = ts
        base = self._base
        refreshed = self._refreshed
        refreshed[1] += 1
        if refreshed[0] is None or ts - refreshed[0] >= _REFRESH_S or refreshed[1] >= _REFRESH_N:
            self._refresh(ts)
        design = self._design
        if design is None:
            base.add(x, ts)
            return Score(0.0, False, x, _QUIET)
        bad = bucket_of(x) > design["limit_bucket"] if self._tail else x >= 0.5
        h = design["h"]
        log_x = math.log(x) if x > 0.0 and self._tail else 0.0
        top = 0.0
        for test, (up, down) in zip(self._tests, design["llr"]):  # noqa: B905 - same length by construction
            w = test[0]
            if w == 0.0:  # the last change point estimate: a new segment starts here
                test[1:] = (0, 0, 0.0, ts)
            w += up if bad else down
            w = h if w > h else 0.0 if w < 0.0 else w
            test[0] = w
            test[1] += 1
            test[2] += bad
            test[3] += log_x
            if w > top:
                top = w
        if not self._active:
            base.add(x, ts)
            if top >= h:
                self._active = True
                j = max(range(len(self._tests)), key=lambda k: self._tests[k][0])
                self._fired = [j, self._tests[j][1], ts - self._tests[j][4]]
        elif top < h - _CLEAR_NATS:
            self._active = False
            self._fired = None
        if not self._active:
            return Score(min(1.0, top / h), False, x, _QUIET)
        return self._verdict(top, ts)

    def _verdict(self, top: float, ts: float) -> Score:
        design = self._design
        j, events, detect_s = self._fired  # type: ignore[misc]
        w, n, hits, logs, start = self._tests[j]
        ratio = hits / n if n else 0.0
        level = math.exp(logs / n) if self._tail and n else ratio
        evidence = {
            "model": self.model, "statistic": top, "threshold": design["h"], "level": level,
            "baseline": design["baseline"], "limit": design["limit"], "ratio": ratio,
            "baseline_ratio": design["p0"], "design_ratio": design["p1"][j], "events": events,
            "detect_s": detect_s, "since_s": ts - start, "rate_per_s": design["rate"],
            "false_alarm_days": self.false_alarm_days,
        }  # fmt: skip
        return Score(min(1.0, top / design["h"]), True, level, evidence)

    # --- the baseline's reading: p0, the tests and h ----------------------------------------
    def _learn_rate(self, ts: float, last: float | None) -> None:
        if last is None:
            return
        step = self._step
        gap = ts - last if step is None else min(ts - last, 10.0 * step)
        self._step = gap if step is None else step + _RATE_GAIN * (gap - step)

    def _refresh(self, ts: float) -> None:
        self._refreshed = [ts, 0]
        base = self._base
        design = self._design
        if self._active or (design is not None and max(t[0] for t in self._tests) > design["h"] * _FREEZE_AT):
            return  # evidence is building up or an alarm is on: the fault must not move the design
        if base.count < self.min_baseline_count or ts - self._t0 < self.min_baseline_s or not self._step:  # type: ignore[operator]
            return
        if self._tail:
            limit_bucket, p_hat, baseline = base.read(self.quantile)
            limit = edge(limit_bucket)
        else:
            limit_bucket, limit = 0, 0.5
            p_hat = base.hits / base.total if base.total > 0 else 0.0
            baseline = p_hat
        p0 = max(wilson_upper(p_hat, base.effective_n()), self.min_ratio)
        if p0 >= _MAX_P1:
            self._design = None
            return
        rate = 1.0 / max(self._step, 1e-6)  # type: ignore[arg-type]
        p1s = [min(f * p0, _MAX_P1) for f in self.factors]
        h = math.log(len(self.factors) * self.false_alarm_days * 86400.0 * rate)
        self._design = {
            "limit_bucket": limit_bucket, "limit": limit, "baseline": baseline, "p0": p0, "p1": p1s, "h": max(h, 1.0),
            "rate": rate, "llr": [[math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0))] for p1 in p1s],
        }  # fmt: skip
        if len(self._tests) != len(p1s):
            self._tests = [[0.0, 0, 0, 0.0, ts] for _ in p1s]

    # --- contract tests ---------------------------------------------------------------------
    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        # a short stream at one point a second: a baseline of 100 s is enough
        return {"min_baseline_count": 100, "min_baseline_s": 60.0}


_STATE_KEYS = ("ts", "t0", "step", "design", "refreshed", "tests", "active", "fired")


def _number(name: str, value: Any, low: float, high: float, open_low: bool = False, open_high: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (open_low and value == low) or (open_high and value == high):
        where = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise DetectorError(f"{name} must be a number in {where}, got {value!r}")
    return float(value)
