"""Error ratio against an SLO (multi-window, multi-burn-rate) or against its own baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.duration import format_duration
from agent.errors import DetectorError
from agent.model import Score

from ._windows import BucketWindow, durations, is_number
from .base import Detector

__all__ = ["ErrorRate"]

_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_Z = 3.0  # the baseline used by the anomaly test is its Wilson upper bound at z = 3


class ErrorRate(Detector):
    """Error ratio of a series: SLO burn rate over window pairs, or a jump above its baseline.

    The observation is an error indicator (1 for a failed request, 0 for a good one;
    a rule gets it with ``field: status`` and ``equals: error``). With an SLO target the
    detector is the Site Reliability Workbook's multi-window, multi-burn-rate alert: a
    pair (long window, short window, factor) is active when the error ratio of BOTH
    windows burns the error budget (1 - slo_target) at least ``factor`` times faster
    than allowed, so it pages fast on a big outage (14.4x: 2 % of a 30-day budget in one
    hour), catches a slower leak on the 6 h pair, and stops soon after recovery (the
    short window empties). Without an SLO (``slo_target=None``) it learns the series'
    own error ratio and is active when the recent errors are far too many for that
    baseline: a binomial tail (Chernoff bound) below ``p_value`` against the upper end
    of the baseline's Wilson interval (z = 3, so a young baseline gets the benefit of the
    doubt) and at least ``min_factor`` times the baseline ratio, so a service failing a
    steady 2 % stays quiet while a jump to 20 % pages in seconds to a minute, depending
    on traffic. The verdict's ``value`` is the error ratio of the shortest window.

    Counts are kept per window in 30 time buckets of event time (plus one partial), so a
    series holds at most 31 x 2 counts per window length, 1-2 KB serialised with the
    default pairs (1 h, 5 m, 6 h, 30 m): the 5 m window is exact to 10 s, the 6 h one to
    12 min, and the partial bucket at the window's edge is counted pro rata. A series
    younger than a window is measured over its age, as a Prometheus range is over the
    samples it has. ``evaluate(ts)`` moves the windows to ``ts`` without an event, so an
    alert resolves once the errors leave the short window.

    Parameters
    ----------
    slo_target
        Fraction of requests that must succeed, e.g. 0.999; the error budget is
        ``1 - slo_target``. ``None`` selects the anomaly mode (no SLO).
    windows
        SLO mode: (long_s, short_s, factor) triples; a triple is active when both of its
        windows burn the budget at least ``factor`` times too fast. Windows are seconds
        or durations such as ``"1h"``. The default is the workbook's two paging pairs.
    min_errors
        Errors needed before a verdict can be active: in the long window of a pair (SLO
        mode; the short one only confirms the burn goes on) or in the recent window
        (anomaly mode), so a few failed requests on a quiet service never page.
    anomaly_windows_s
        Anomaly mode: the recent windows, in seconds, each compared with the baseline
        (the short one is fast on large jumps, the long one sees smaller ones).
    baseline_half_life_s
        Anomaly mode: half-life in seconds of the learned error ratio. The baseline
        learns only from requests older than the longest anomaly window, so an incident
        does not hide itself; a lasting new level becomes normal over a few half-lives.
    p_value
        Anomaly mode: the tail probability (Chernoff bound of the binomial tail, with
        Bonferroni over the windows) under which the recent errors count as anomalous.
    min_factor
        Anomaly mode: the recent ratio must also be at least this multiple of the
        baseline ratio, so a statistically clear but small shift on a busy service
        (2 % -> 3 %) does not page.
    min_baseline_count
        Anomaly mode: requests the baseline must have learned before any verdict.

    Examples
    --------
    >>> import random
    >>> from detectors.error_rate import ErrorRate
    >>> rng = random.Random(7)
    >>> det = ErrorRate(slo_target=0.999)  # 2 requests/s, 0.05 % errors; half fail from t=3600s
    >>> stream = [(i / 2, float(rng.random() < (0.0005 if i < 7200 else 0.5))) for i in range(8000)]
    >>> first = next(i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active)
    >>> first, stream[first][0]
    (7263, 3631.5)

    A service at a steady 2 % with no SLO, jumping to 20 %:

    >>> rng = random.Random(7)
    >>> det = ErrorRate(slo_target=None)
    >>> stream = [(i / 10, float(rng.random() < (0.02 if i < 12_000 else 0.2))) for i in range(14_000)]
    >>> first = next(i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active)
    >>> first, stream[first][0]
    (12159, 1215.9)

    References
    ----------
    Beyer, Murphy, Rensin, Kawahara, Thorne (eds.), *The Site Reliability Workbook*,
    O'Reilly 2018, chapter 5 "Alerting on SLOs" (multiwindow, multi-burn-rate alerts).
    Hoeffding, "Probability inequalities for sums of bounded random variables", JASA
    58 (1963): the binomial tail bound exp(-n KL(q || p)).
    Wilson, "Probable inference...", JASA 22 (1927): the score interval of a proportion.

    """

    kind = "error_rate"

    def __init__(
        self,
        *,
        slo_target: float | None = 0.999,
        windows: tuple = ((3600.0, 300.0, 14.4), (21600.0, 1800.0, 6.0)),
        min_errors: int = 5,
        anomaly_windows_s: tuple = (60.0, 600.0),
        baseline_half_life_s: float = 21600.0,
        p_value: float = 1e-6,
        min_factor: float = 2.0,
        min_baseline_count: int = 200,
    ) -> None:
        if slo_target is not None and (not is_number(slo_target) or not 0.0 < slo_target < 1.0):
            raise DetectorError(f"slo_target must be a fraction between 0 and 1 (e.g. 0.999) or null, got {slo_target!r}")
        self.slo_target = None if slo_target is None else float(slo_target)
        self.windows = _triples(windows)
        self.min_errors = _positive_int("min_errors", min_errors)
        self.anomaly_windows_s = durations("anomaly_windows_s", anomaly_windows_s)
        self.baseline_half_life_s = _positive("baseline_half_life_s", baseline_half_life_s)
        if not is_number(p_value) or not 0.0 < p_value < 1.0:
            raise DetectorError(f"p_value must be between 0 and 1 (e.g. 1e-6), got {p_value!r}")
        self.p_value = float(p_value)
        if not is_number(min_factor) or not 1.0 <= min_factor < math.inf:
            raise DetectorError(f"min_factor must be a number >= 1, got {min_factor!r}")
        self.min_factor = float(min_factor)
        self.min_baseline_count = _positive_int("min_baseline_count", min_baseline_count)
        # the error budget, rounded so that 0.999 gives 0.001 and not 0.0010000000000000009
        self._budget = 0.0 if self.slo_target is None else float(f"{1.0 - self.slo_target:.12g}")
        if self.slo_target is not None:
            budget = self._budget
            for _, _, factor in self.windows:
                if factor * budget > 1.0:
                    raise DetectorError(
                        f"windows: factor {factor:g} can never fire with slo_target {self.slo_target:g} "
                        f"(it needs an error ratio of {factor * budget:.3g} > 1); lower the factor"
                    )
            lengths = sorted({w for long_s, short_s, _ in self.windows for w in (long_s, short_s)})
        else:
            lengths = sorted(set(self.anomaly_windows_s))
        self._lengths = tuple(lengths)
        self._names = tuple(format_duration(w) for w in lengths)
        self._rings = tuple(BucketWindow(w) for w in lengths)
        self._pairs = (
            tuple((lengths.index(lo), lengths.index(sh), f) for lo, sh, f in self.windows) if self.slo_target is not None else ()
        )
        self._threshold_nats = math.log(len(lengths) / self.p_value)
        self._decay = 0.5 ** (self._rings[-1].width_s / self.baseline_half_life_s)
        self._ts = -math.inf
        self._base_errors = 0.0
        self._base_requests = 0.0

    # --- learning -------------------------------------------------------------------
    def update(self, x: float, ts: float) -> Score:
        ts = self._advance(ts)
        error = 1 if x >= 0.5 else 0
        for ring in self._rings:  # BucketWindow.add, inlined: sums count errors, counts requests
            i = ring.index % ring.size
            ring.counts[i] += 1
            ring.count += 1
            if error:
                ring.sums[i] += 1.0
                ring.total += 1.0
        return self._score(ts)

    def evaluate(self, ts: float) -> Score:
        """Score the windows as they stand at ``ts``, expiring what fell out of them."""
        return self._score(self._advance(ts))

    def _advance(self, ts: float) -> float:
        if ts < self._ts:
            ts = self._ts  # event time only moves forward
        self._ts = ts
        last = len(self._rings) - 1
        for k, ring in enumerate(self._rings):
            index = math.floor(ts / ring.width_s)
            if index > ring.index:
                if k == last and self.slo_target is None:
                    self._learn(ring, index)
                else:
                    ring.advance(index)
        return ts

    def _learn(self, ring: BucketWindow, index: int) -> None:
        """Fold the buckets leaving the longest anomaly window into the baseline."""
        evicted: list[tuple[float, int]] = []
        empty = max(0, ring.advance(index, evicted) - ring.size)  # buckets passed that never held data
        d = self._decay
        e, n = self._base_errors, self._base_requests
        for be, bn in evicted:
            e = e * d + be
            n = n * d + bn
        if empty:
            fade = d**empty
            e, n = e * fade, n * fade
        self._base_errors, self._base_requests = e, n

    # --- scoring --------------------------------------------------------------------
    def _counts(self, ts: float) -> list[tuple[float, float]]:
        return [ring.window(ts) for ring in self._rings]

    def _score(self, ts: float) -> Score:
        counts = self._counts(ts)
        e0, n0 = counts[0]
        value = e0 / n0 if n0 > 0 else 0.0
        if self.slo_target is None:
            return self._anomaly(counts, value)
        return self._burn(counts, value)

    def _burn(self, counts: list[tuple[float, float]], value: float) -> Score:
        budget = self._budget
        min_errors = self.min_errors
        best, best_pair = 0.0, -1
        for p, (lo, sh, factor) in enumerate(self._pairs):
            el, nl = counts[lo]
            es, ns = counts[sh]
            if nl <= 0 or ns <= 0:
                continue
            burn = min(el / nl, es / ns) / budget
            s = min(burn / factor, el / min_errors)
            if s > best:
                best, best_pair = s, p
        if best < 1.0:
            return Score(best, False, value, _QUIET)
        lo, sh, factor = self._pairs[best_pair]
        (el, nl), (es, ns) = counts[lo], counts[sh]
        evidence: dict[str, Any] = {
            "slo_target": self.slo_target,
            "budget": budget,
            "baseline": budget,
            "factor": factor,
            "window_s": self._lengths[lo],
            "short_window_s": self._lengths[sh],
            "burn_rate": min(el / nl, es / ns) / budget,
            "long_burn_rate": el / nl / budget,
            "short_burn_rate": es / ns / budget,
            "error_ratio": es / ns,
            "errors": es,
            "requests": ns,
        }
        for name, (e, n) in zip(self._names, counts, strict=True):
            evidence["burn_" + name] = (e / n if n > 0 else 0.0) / budget
        return Score(1.0, True, value, evidence)

    def _anomaly(self, counts: list[tuple[float, float]], value: float) -> Score:
        base_n = self._base_requests
        if base_n < self.min_baseline_count:
            return Score(0.0, False, value, _QUIET)
        base = self._base_errors / base_n
        upper = _wilson_upper(base, base_n)
        if upper >= 1.0:
            return Score(0.0, False, value, _QUIET)
        best, best_k, best_nats = 0.0, -1, 0.0
        for k, (e, n) in enumerate(counts):
            if n <= 0:
                continue
            q = e / n
            if q <= upper:
                continue
            nats = n * _kl(q, upper)
            s = min(nats / self._threshold_nats, e / self.min_errors, q / (self.min_factor * base) if base > 0 else 1.0)
            if s > best:
                best, best_k, best_nats = s, k, nats
        if best < 1.0:
            return Score(min(best, 1.0), False, value, _QUIET)
        e, n = counts[best_k]
        evidence = {
            "baseline": base,
            "baseline_upper": upper,
            "baseline_requests": base_n,
            "error_ratio": e / n,
            "errors": e,
            "requests": n,
            "expected_errors": n * base,
            "factor": e / n / base if base > 0 else math.inf,
            "window_s": self._lengths[best_k],
            "p_value_bound": math.exp(-best_nats),
        }
        return Score(1.0, True, value, evidence)

    # --- contract tests and checkpoints ---------------------------------------------
    @classmethod
    def _unit_test_stream(cls, seed: int, n: int = 400) -> list[tuple[float, Any]]:
        """One request a second: 0.05 % errors, then half of them failing."""
        import random

        rng = random.Random(seed)
        return [(float(i), float(rng.random() < (0.0005 if i < n // 2 else 0.5))) for i in range(n)]

    def _dump(self) -> Any:
        return {
            "ts": None if self._ts == -math.inf else self._ts,
            "rings": [ring.dump() for ring in self._rings],
            "base": [self._base_errors, self._base_requests],
        }

    def _load(self, state: Any) -> None:
        self._ts = -math.inf if state["ts"] is None else float(state["ts"])
        for ring, data in zip(self._rings, state["rings"], strict=True):
            ring.load(data)
        self._base_errors, self._base_requests = (float(v) for v in state["base"])


def _kl(q: float, p: float) -> float:
    """Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p), in nats (q > p)."""
    out = q * math.log(q / p)
    if q < 1.0:
        out += (1.0 - q) * math.log((1.0 - q) / (1.0 - p))
    return out


def _wilson_upper(p: float, n: float) -> float:
    z2 = _Z * _Z
    centre = p + z2 / (2 * n)
    spread = _Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre + spread) / (1 + z2 / n)


def _positive(name: str, v: Any) -> float:
    if not is_number(v) or v <= 0:
        raise DetectorError(f"{name} must be a positive number of seconds, got {v!r}")
    return float(v)


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise DetectorError(f"{name} must be an integer >= 1, got {v!r}")
    return v


def _triples(windows: Any) -> tuple[tuple[float, float, float], ...]:
    hint = "write e.g. [[1h, 5m, 14.4], [6h, 30m, 6]] (long window, short window, burn factor)"
    if isinstance(windows, (str, bytes)) or not isinstance(windows, (tuple, list)) or not windows:
        raise DetectorError(f"windows must be a non-empty list of triples: {hint}")
    out = []
    for triple in windows:
        if isinstance(triple, (str, bytes)) or not isinstance(triple, (tuple, list)) or len(triple) != 3:
            raise DetectorError(f"windows: {triple!r} is not a triple: {hint}")
        long_s, short_s = durations("windows", triple[:2])
        factor = triple[2]
        if not is_number(factor) or factor <= 0:
            raise DetectorError(f"windows: burn factor {factor!r} must be a positive number")
        if short_s > long_s:
            raise DetectorError(f"windows: the short window ({triple[1]!r}) is longer than the long one ({triple[0]!r}): {hint}")
        out.append((long_s, short_s, float(factor)))
    return tuple(out)
