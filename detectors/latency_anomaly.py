"""Adaptive anomaly detector for latency and other KPI series, with an optional SLO check."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.errors import DetectorError
from agent.model import Score

from ._bucket_agg import aggregate_add, aggregate_value, quantile_of
from .base import Detector

__all__ = ["LatencyAnomaly"]

_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_DAY_S, _WEEK_S = 86400.0, 604800.0
_DAY_BINS, _WEEK_BINS = 24, 168  # hour of day, hour of week
_HUBER = 3.0  # residuals are clipped at this many spreads before they are learned
_VAR_FLOOR = 3e-4  # Numenta's: a near-perfectly predicted series must not page on a blip
_MIN_POINTS = 100  # before any anomaly verdict: the likelihood and the range need a sample
_REF_HALFLIFE_S = 3 * _DAY_S  # the creep reference: follows the level this slowly
_REF_START_S = 2 * _DAY_S  # ... and anchors on it (no creep verdicts) for the first two days
_REF_BAND = 0.5  # reference spreads within which the level counts as in control
_CREEP_SPREADS = 3.0  # level this many reference spreads from the reference: creep
_SLO_SLICES = 10
_AGGS = ("mean", "max")


class LatencyAnomaly(Detector):
    """Learn a KPI series' level, spread and daily/weekly shape; flag what does not fit.

    For latency, error ratio, throughput or any KPI whose normal level is not known in
    advance. Each point (an event-time bucket of observations, or one observation) is
    compared with a robust Holt-Winters baseline: a Huber-clipped exponentially weighted
    level plus an hour-of-day profile after two days, or an hour-of-week profile after
    two weeks, each used only while it explains the series clearly better (by 20 % and
    10 % of the mean absolute residual) than the simpler model. The residual in spreads,
    ``z``, becomes a raw score ``1 - exp(-z**2 / 18)``: near 0 for ordinary noise, near 1
    past three spreads. As in Numenta's anomaly likelihood, the mean of the last
    ``average_n`` raw scores is compared with the long-run distribution of that mean (a
    Gaussian with exponentially weighted moments, variance floor 3e-4 as Numenta's), and
    its tail probability ``p`` gives the score ``min(1, -log10(p) / 10)``: the ``shift``
    test, for runs of surprising residuals. Two tests score 1 outright: ``spike``, a value
    beyond everything seen so far by ``range_margin_ratio`` of the range and by one spread
    (HTM's spatial rule; the first point of a large level shift reads so too), and
    ``creep``, a level three spreads away from a slow reference (half-life three days)
    that, like a control chart's centre line, stops learning its spread while the level
    is away from it, so a drift the baseline keeps following is still caught.

    The verdict is active when the score reaches ``threshold``; for ``refractory_s``
    after that (and at least ``average_n`` points, the span of the averaged evidence)
    scores are held just below the threshold, and the creep reference re-anchors for
    three days, so one incident gives one early detection (a change that persists and
    still surprises is reported again after ``refractory_s``): pair the rule with
    ``for: 0s`` and a ``keep_firing_for``. An active verdict's evidence names the
    ``test`` and gives the value, baseline, spread, ``z``, score, ``p_value``, the
    averaged window (``average_n``, ``window_s``), the bucket, the range and the
    creep reference.

    With ``slo_ms`` set, the observations at or below ``slo_ms`` in the last
    ``slo_window_s`` (ten slices) are counted exactly, and the verdict is active with
    score 1, evidence ``test: slo``, for as long as the window's ``slo_quantile`` exceeds
    ``slo_ms`` (fewer than ``ceil(slo_quantile * n)`` observations within target); the
    rule's ``for`` debounces it. State stays under 8 KB: two profiles (24 + 168 bins),
    ``average_n`` raw scores, a five-marker bucket quantile, ten SLO slices.

    Parameters
    ----------
    threshold
        Score at which the verdict becomes active. 0.5 is a tail probability of 1e-5
        (Numenta's log-likelihood scale and threshold), about one false alarm in 100,000
        points if the model held; one fixed value for every series.
    bucket_s
        Event-time bucket in seconds; each closed bucket is one point. The default 60
        turns per-request latency into a per-minute KPI and leaves series with steps of a
        minute or more (scrapes, NAB's 5-minute points) one point per observation, whose
        verdict then comes with the next observation (or an ``evaluate`` past the bucket's
        end). 0 scores every observation as it arrives.
    bucket_agg
        ``mean``, ``max`` or a quantile ``pNN`` (P-square estimate in constant memory).
    level_halflife_s
        Half-life in seconds of the level and spread; a day follows drifts within a day
        or two while a shift stays visible for hours.
    average_n
        Points averaged before the likelihood test (Numenta's averaging window, 10).
    history_n
        Half-life, in points, of the distribution the average is compared with.
    range_margin_ratio
        How far beyond the learned min/max, as a fraction of their distance, a value
        must lie to score 1 (HTM's 5 %); ``None`` turns the range test off.
    refractory_s
        Seconds after an active verdict during which scores are held below threshold.
    warmup_s
        Event-time seconds learned (and at least 100 points) before anomaly verdicts.
    slo_ms
        SLO target in the observed unit, e.g. ms; ``None`` turns the SLO test off.
    slo_quantile
        Quantile held to ``slo_ms``, such as 0.99.
    slo_window_s
        Window of the SLO quantile in seconds.
    slo_min_count
        Observations needed in the window before an SLO verdict.

    Examples
    --------
    A pre-aggregated latency KPI, one point every 5 minutes, whose level jumps at 700:

    >>> import random
    >>> from detectors.latency_anomaly import LatencyAnomaly
    >>> rng = random.Random(7)
    >>> det = LatencyAnomaly(bucket_s=0.0)
    >>> stream = [rng.gauss(120.0, 8.0) + (60.0 if i >= 700 else 0.0) for i in range(800)]
    >>> verdicts = [det.update(x, ts=300.0 * i) for i, x in enumerate(stream)]
    >>> first = next(i for i, v in enumerate(verdicts) if v.active)
    >>> first, verdicts[first].evidence["test"], round(verdicts[first].evidence["baseline"])
    (700, 'spike', 120)

    References
    ----------
    Ahmad, Lavin, Purdy, Agha (2017), Unsupervised real-time anomaly detection for
    streaming data, Neurocomputing 262 (anomaly likelihood, HTM's spatial rule, NAB).
    Gelper, Fried, Croux (2010), Robust forecasting with exponential and Holt-Winters
    smoothing, Journal of Forecasting 29.
    Jain, Chlamtac (1985), The P-square algorithm for dynamic calculation of quantiles
    and histograms without storing observations, CACM 28.
    """

    kind = "latency_anomaly"

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        bucket_s: float = 60.0,
        bucket_agg: str = "p95",
        level_halflife_s: float = 86400.0,
        average_n: int = 10,
        history_n: int = 500,
        range_margin_ratio: float | None = 0.05,
        refractory_s: float = 10800.0,
        warmup_s: float = 86400.0,
        slo_ms: float | None = None,
        slo_quantile: float = 0.99,
        slo_window_s: float = 300.0,
        slo_min_count: int = 20,
    ) -> None:
        def number(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < low or value > high or (low_open and value == low):
                where = f"{'(' if low_open else '['}{low:g}, {high:g}]"
                raise DetectorError(f"latency_anomaly: {name} must be a number in {where}, got {value!r}")
            return float(value)

        def count(name: str, value: Any, low: int) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise DetectorError(f"latency_anomaly: {name} must be an integer >= {low}, got {value!r}")
            return value

        self.threshold = number("threshold", threshold, 0.0, 1.0, low_open=True)
        self.bucket_s = number("bucket_s", bucket_s, 0.0)
        if bucket_agg not in _AGGS and not quantile_of(bucket_agg):
            raise DetectorError(f"latency_anomaly: bucket_agg {bucket_agg!r} is not mean, max or a quantile like p95")
        self.bucket_agg = bucket_agg
        self.level_halflife_s = number("level_halflife_s", level_halflife_s, 0.0, low_open=True)
        self.average_n = count("average_n", average_n, 1)
        self.history_n = count("history_n", history_n, 2)
        self.range_margin_ratio = None if range_margin_ratio is None else number("range_margin_ratio", range_margin_ratio, 0.0)
        self.refractory_s = number("refractory_s", refractory_s, 0.0)
        self.warmup_s = number("warmup_s", warmup_s, 0.0)
        self.slo_ms = None if slo_ms is None else number("slo_ms", slo_ms, 0.0)
        self.slo_quantile = number("slo_quantile", slo_quantile, 0.0, 1.0, low_open=True)
        self.slo_window_s = number("slo_window_s", slo_window_s, 0.0, low_open=True)
        self.slo_min_count = count("slo_min_count", slo_min_count, 1)
        self._q = quantile_of(bucket_agg)
        self._load(self._fresh())

    # --- state ------------------------------------------------------------------------
    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {
            "n": 0, "t0": None, "tprev": None, "step": None, "level": 0.0, "spread": 0.0, "mag": 0.0,
            "day": [0.0] * _DAY_BINS, "day_n": [0] * _DAY_BINS, "week": [0.0] * _WEEK_BINS, "week_n": [0] * _WEEK_BINS,
            "err": [0.0, 0.0, 0.0], "raw": [], "raw_sum": 0.0, "hmean": 0.0, "hvar": 0.0, "hn": 0,
            "lo": None, "hi": None, "ref": None, "ref_spread": 0.0, "fired": None, "bucket": None, "slo": [],
        }  # fmt: skip

    def _dump(self) -> Any:
        return {k: getattr(self, "_" + k) for k in _STATE_KEYS}

    def _load(self, state: Any) -> None:
        for key in _STATE_KEYS:
            value = state[key]
            setattr(self, "_" + key, list(value) if isinstance(value, list) else value)
        self._slo = [list(s) for s in self._slo]
        if self._bucket is not None:
            self._bucket = [self._bucket[0], self._bucket[1], list(self._bucket[2])]

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        # a short stream at one point a second: no bucketing, no warm-up, a wider range margin
        return {"bucket_s": 0.0, "warmup_s": 0.0, "range_margin_ratio": 0.5}

    # --- the Detector interface ----------------------------------------------------------
    def update(self, x: float, ts: float) -> Score:
        slo = self._slo_add(x, ts) if self.slo_ms is not None else None
        if self.bucket_s == 0.0:
            verdict = self._score(x, ts)
        else:
            verdict = self._close_bucket(ts)
            bucket = self._bucket
            if bucket is None:
                bucket = self._bucket = [math.floor(ts / self.bucket_s) * self.bucket_s, 0, []]
            bucket[1] += 1
            bucket[2] = aggregate_add(bucket[2], x, bucket[1], self.bucket_agg, self._q)
            if verdict is None:
                verdict = Score(0.0, False, x, _QUIET)
        return self._with_slo(verdict, slo)

    def evaluate(self, ts: float) -> Score:
        """Close a bucket that ended by ``ts`` and give its verdict (or a quiet one)."""
        slo = self._slo_check(ts) if self.slo_ms is not None else None
        verdict = self._close_bucket(ts) if self.bucket_s > 0.0 else None
        return self._with_slo(verdict or Score(0.0, False, math.nan, _QUIET), slo)

    # --- buckets and the SLO window ---------------------------------------------------------
    def _close_bucket(self, ts: float) -> Score | None:
        bucket = self._bucket
        if bucket is None or ts < bucket[0] + self.bucket_s:
            return None
        self._bucket = None
        return self._score(aggregate_value(bucket[2], bucket[1], self.bucket_agg, self._q), bucket[0])

    def _slo_add(self, x: float, ts: float) -> Mapping[str, Any] | None:
        index = math.floor(ts * _SLO_SLICES / self.slo_window_s)
        slices = self._slo
        k = len(slices)
        while k and slices[k - 1][0] > index:  # a late observation goes to its own slice
            k -= 1
        if not k or slices[k - 1][0] < index:
            slices.insert(k, [index, 0, 0])
            k += 1
        slices[k - 1][1] += 1
        slices[k - 1][2] += x <= self.slo_ms  # type: ignore[operator]
        return self._slo_check(max(ts, slices[-1][0] * self.slo_window_s / _SLO_SLICES))

    def _slo_check(self, ts: float) -> Mapping[str, Any] | None:
        horizon = math.floor(ts * _SLO_SLICES / self.slo_window_s) - _SLO_SLICES
        slices = self._slo
        while slices and slices[0][0] <= horizon:
            slices.pop(0)
        n = sum(s[1] for s in slices)
        good = sum(s[2] for s in slices)
        if n < self.slo_min_count or good >= math.ceil(self.slo_quantile * n):
            return None
        return {"test": "slo", "slo_ms": self.slo_ms, "slo_quantile": self.slo_quantile,
                "slo_window_s": self.slo_window_s, "n": n, "over_ratio": (n - good) / n, "score": 1.0}  # fmt: skip

    def _with_slo(self, verdict: Score, slo: Mapping[str, Any] | None) -> Score:
        if slo is None or verdict.active:
            return verdict
        return Score(1.0, True, verdict.value, slo)

    # --- the anomaly tests -------------------------------------------------------------------
    def _score(self, x: float, ts: float) -> Score:
        self._n += 1
        if self._t0 is None:
            self._t0 = self._tprev = ts
            self._level, self._mag, self._lo, self._hi = x, abs(x), x, x
            return Score(0.0, False, x, _QUIET)
        step = self._step
        gap = min(max(ts - self._tprev, 0.0), 10.0 * step) if step is not None else max(ts - self._tprev, 1e-3)
        step = self._step = max(gap if step is None else step + 0.05 * (gap - step), 1e-3)
        self._tprev = ts
        day_i = int(ts % _DAY_S // (_DAY_S / _DAY_BINS))
        week_i = int(ts % _WEEK_S // (_WEEK_S / _WEEK_BINS))
        age = ts - self._t0
        err = self._err
        use_week = age >= 2 * _WEEK_S and err[2] < 0.9 * min(err[0], err[1])
        use_day = not use_week and age >= 2 * _DAY_S and err[1] < 0.8 * err[0]
        season = self._week[week_i] if use_week else self._day[day_i] if use_day else 0.0
        level = self._level
        baseline = level + season
        scale = max(self._spread, 1e-3 * self._mag, 1e-12)
        z = (x - baseline) / scale
        raw = 1.0 - math.exp(-z * z / 18.0)
        window = self._raw
        window.append(raw)
        self._raw_sum += raw
        if len(window) > self.average_n:
            self._raw_sum -= window.pop(0)
        mean = self._raw_sum / len(window)
        hn = self._hn
        p = 0.5 * math.erfc((mean - self._hmean) / math.sqrt(2.0 * max(self._hvar, _VAR_FLOOR))) if hn >= 20 else 1.0
        score = min(1.0, -math.log10(max(p, 1e-300)) / 10.0)
        lo, hi = self._lo, self._hi
        margin = self.range_margin_ratio
        outside = False
        if margin is not None and hi > lo:
            pad = max(margin * (hi - lo), scale)  # a record by a hair is not news
            outside = x > hi + pad or x < lo - pad
            if outside:
                score = 1.0
        drift = (level - self._ref) / max(self._ref_spread, 1e-3 * self._mag, 1e-12) if age >= _REF_START_S else 0.0
        creep = abs(drift) >= _CREEP_SPREADS
        if creep:
            score = 1.0
        verdict: Score | None = None
        fired = self._fired
        if age < self.warmup_s or self._n <= _MIN_POINTS:
            score = 0.0
        elif fired is not None and (ts - fired[0] < self.refractory_s or self._n - fired[1] <= self.average_n):
            score = min(score, math.nextafter(self.threshold, 0.0))
        elif score >= self.threshold:
            self._fired = [ts, self._n]
            test = "spike" if outside else "creep" if creep else "shift"
            evidence = {
                "test": test, "value": x, "baseline": baseline, "spread": scale, "z": z, "score": score,
                "p_value": p, "average_n": self.average_n, "window_s": self.average_n * step,
                "bucket_s": self.bucket_s, "bucket_agg": self.bucket_agg, "low": lo, "high": hi,
                "reference": self._ref, "drift_spreads": drift,
                "season": "weekly" if use_week else "daily" if use_day else "none",
            }  # fmt: skip
            verdict = Score(score, True, x, evidence)
        self._learn(x, ts, z, scale, step, mean, day_i, week_i)
        return verdict or Score(score, False, x, _QUIET)

    def _learn(self, x: float, ts: float, z: float, scale: float, step: float, mean: float, day_i: int, week_i: int) -> None:
        a = 1.0 - 0.5 ** (step / self.level_halflife_s) if self._n > 30 else 1.0 / self._n
        clip = _HUBER if self._n > 30 else math.inf
        self._level += a * max(-clip, min(clip, z)) * scale  # toward the value, Huber-clipped
        self._spread += a * (min(abs(z), clip) * scale - self._spread)
        self._mag += a * (abs(x) - self._mag)
        resid_day = _learn_profile(self._day, self._day_n, day_i, x - self._level, clip * scale, step, _DAY_S / _DAY_BINS)
        resid_week = _learn_profile(self._week, self._week_n, week_i, x - self._level, clip * scale, step, _WEEK_S / _WEEK_BINS)
        e = 1.0 - 0.5 ** (step / _DAY_S)
        err = self._err
        for k, r in enumerate((x - self._level, resid_day, resid_week)):
            err[k] += e * (min(abs(r), clip * scale) - err[k])
        self._hn += 1
        h = max(1.0 - 0.5 ** (1.0 / self.history_n), 1.0 / self._hn)
        d = mean - self._hmean
        self._hmean += h * d
        self._hvar = (1.0 - h) * (self._hvar + h * d * d)
        self._lo, self._hi = min(self._lo, x), max(self._hi, x)
        # the creep reference follows the level slowly; its spread learns only while in control
        b = max(1.0 - 0.5 ** (step / _REF_HALFLIFE_S), 1.0 / self._n)
        fired = self._fired
        if self._ref is None or ts - self._t0 < _REF_START_S or (fired is not None and ts - fired[0] < _REF_HALFLIFE_S):
            self._ref = self._level  # (re-)anchor: still warming up, or an incident was just reported
            in_control = True
        else:
            unit = max(self._ref_spread, 1e-3 * self._mag, 1e-12)
            in_control = abs(self._level - self._ref) < _REF_BAND * unit
            self._ref += b * (self._level - self._ref)
        if in_control:
            self._ref_spread += b * (min(abs(z), _HUBER) * scale - self._ref_spread)


_STATE_KEYS = tuple(LatencyAnomaly._fresh())


def _learn_profile(profile: list[float], counts: list[int], i: int, r: float, clip: float, step: float, bin_s: float) -> float:
    """Move bin ``i`` toward residual ``r`` (half-life: two periods); return the residual before."""
    before = r - profile[i]
    rate = 1.0 - 0.5 ** (step / (2.0 * bin_s))  # two periods hold 2 * bin_s / step visits of a bin
    counts[i] = min(counts[i] + 1, 1000)
    profile[i] += max(rate, 1.0 / counts[i]) * max(-clip, min(clip, before))
    return before
