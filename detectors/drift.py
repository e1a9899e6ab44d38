"""Drift of a numeric series against a reference, with false alarms budgeted in time."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from statistics import NormalDist
from types import MappingProxyType
from typing import Any

import numpy as np

from agent.errors import DetectorError
from agent.model import Score

from ._drift_evidence import LazyEvidence, num, pack, summary, unpack
from ._rank_cusum import KNOTS, finite, knots_and_counts, sensitivities, solve, weighted_reference
from ._reference import MIN_REFERENCE, parse_window, source_label
from .base import Detector

__all__ = ["Drift"]

_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_DAY_S = 86_400.0
_SIEGMUND = 1.166  # Siegmund's overshoot correction of a Gaussian CUSUM (in sd units)
_MIN_SCALE = 0.5  # a (nearly) constant reference does not blow normal scores up
_RATE_STEP = 1.05  # thresholds follow the event rate when it moves by more than 5 %
_CAP, _RELEASE = 1.5, 0.5  # a CUSUM stops at 1.5 h; an active verdict ends below 0.5 h


class Drift(Detector):
    """Detect a change of a numeric feature's or prediction's distribution from a reference.

    Use it on model inputs and outputs whose distribution should stay as it was when the
    model was validated. The reference is the first ``reference_size`` events of the
    series, the events of a named ``reference_window`` of event time, or a fixed
    ``reference`` sample (a rule's ``reference_file``, summarised by the rules layer).
    Each later value becomes a normal score through the reference's empirical
    distribution (``z = Phi^-1(mid-rank / (n + 1))``), so any distribution looks standard
    normal while it matches the reference. A bank of one-sided CUSUMs watches the scores:
    mean shifts of ``mean_shifts_sd`` reference sd up and down, and a spread change by
    ``scale_ratio`` wider and narrower. The verdict is active while a CUSUM is over its
    threshold (until it falls under half of it), so it stays active while the data
    differ from the reference. The reference is kept as 256 knots (its first values)
    and the counts of all its values between them: a few KB whatever its size.

    False alarms are budgeted in time: at most one per ``false_alarm_days`` at the
    series' event rate ``r`` (events per second of event time, estimated online). The
    ``M`` CUSUMs test at every event, so each gets an in-control average run length
    ``ARL0 = M * r * false_alarm_days * 86400`` events: a per-event false alarm rate
    ``alpha = 1 / ARL0``, and by the union bound at most one expected false alarm per
    period. A mean CUSUM for shift ``d`` has ``ARL0 = exp(h + 1.166 d) / (d^2 / 2)`` at
    threshold ``h`` (Siegmund), a spread CUSUM ``ARL0 >= exp(h)`` (Lorden). Two
    corrections keep the budget honest. The reference is a sample of ``n`` values, its
    mean off by about ``1/sqrt(n)`` sd and its variance by ``sqrt((kurtosis - 1) / n)``;
    averaged over that error the alarm rate grows to ``exp(-u + a u^2)`` and the
    threshold solves ``u - a u^2 = ln ARL0`` (``a = 2 / (n d^2)`` for a Gaussian mean
    test), so shifts too small to confirm from ``n`` reference values are skipped. And
    where scores are not Gaussian (ties, few distinct values), ``h`` is divided by the
    Lundberg exponent ``theta`` (``mean(exp(theta * llr)) = 1`` over the reference).
    Example: 1 event/s, 30 days, 5000 reference values, 10 CUSUMs: ``ARL0 = 2.6e7``
    and ``h = 15.3`` for ``d = 1``, so a 1 sd shift is confirmed after about
    ``15.3 / (d - d^2 / 2) = 31`` events.

    Parameters
    ----------
    reference_size
        Number of first events learned as the reference when ``reference`` is empty.
    reference
        A fixed reference, used from the first event (``reference_size`` is then
        ignored): values in the observed field's unit, or ``(value, count)`` pairs, such
        as a reference file's quantiles with the rows each stands for. Each entry costs
        10-30 checkpoint bytes; a file summarised as 256 pairs keeps its full weight.
    reference_window
        ``[start, end]`` (RFC 3339 times or epoch seconds): the events of this period of
        event time are the reference, earlier ones are not learned, and the first event
        at or after ``end`` completes it. If the period passed before the series began,
        the first ``reference_size`` events are learned instead (the evidence's
        ``reference_source`` says which).
    false_alarm_days
        The false-alarm budget: at most one false drift alert per this many days at the
        series' event rate.
    mean_shifts_sd
        Mean shifts to watch for, in reference standard deviations (normal-score units);
        each adds an up and a down CUSUM. Smaller shifts take longer to confirm.
    scale_ratio
        Spread change to watch for (ratio of standard deviations, > 1); adds a wider
        and a narrower CUSUM. ``None`` watches means only.
    window_size
        Most recent values kept as the current window for evidence and drift reports.
    relearn
        After a confirmed drift, learn a new reference from the next ``reference_size``
        events (the verdict stays active until it is complete), as ADWIN adapts; when
        off, the reference is fixed and the verdict stays active while the drift lasts.

    Examples
    --------
    >>> import random
    >>> from detectors.drift import Drift
    >>> rng = random.Random(7)
    >>> stream = [rng.gauss(0.0, 1.0) for _ in range(2000)] + [rng.gauss(1.0, 1.0) for _ in range(500)]
    >>> det = Drift(reference_size=1000)
    >>> first = next(i for i, x in enumerate(stream) if det.update(x, ts=float(i)).active)
    >>> first
    2027

    References
    ----------
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    Lorden, G. (1971). Procedures for reacting to a change in distribution. The Annals
    of Mathematical Statistics 42(6), 1897-1908.
    Siegmund, D. (1985). Sequential Analysis: Tests and Confidence Intervals. Springer.

    """

    kind = "drift"

    def __init__(
        self,
        *,
        reference_size: int = 5000,
        reference: tuple[float, ...] = (),
        reference_window: tuple | None = None,
        false_alarm_days: float = 30.0,
        mean_shifts_sd: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0),
        scale_ratio: float | None = 1.5,
        window_size: int = 200,
        relearn: bool = False,
    ) -> None:
        if isinstance(reference_size, bool) or not isinstance(reference_size, int) or reference_size < 10:
            raise DetectorError(f"reference_size must be an integer >= 10, got {reference_size!r}")
        weighted = weighted_reference(reference)
        if reference and sum(c for _, c in weighted) < 10:
            raise DetectorError(f"reference needs at least 10 values, got {sum(c for _, c in weighted)}")
        if not finite(false_alarm_days) or false_alarm_days <= 0:
            raise DetectorError(f"false_alarm_days must be a positive number of days, got {false_alarm_days!r}")
        if not isinstance(mean_shifts_sd, (tuple, list)) or not all(finite(d) and d > 0 for d in mean_shifts_sd):
            raise DetectorError(f"mean_shifts_sd must be a list of positive numbers, got {mean_shifts_sd!r}")
        if scale_ratio is not None and (not finite(scale_ratio) or scale_ratio <= 1.0):
            raise DetectorError(f"scale_ratio must be a number > 1 (or null for means only), got {scale_ratio!r}")
        if not mean_shifts_sd and scale_ratio is None:
            raise DetectorError("nothing to watch: give mean_shifts_sd or scale_ratio")
        if isinstance(window_size, bool) or not isinstance(window_size, int) or not 10 <= window_size <= 10_000:
            raise DetectorError(f"window_size must be an integer between 10 and 10000, got {window_size!r}")
        if not isinstance(relearn, bool):
            raise DetectorError(f"relearn must be true or false, got {relearn!r}")
        self.reference_size = reference_size
        self.reference = tuple(float(v) if finite(v) else (float(v[0]), int(v[1])) for v in reference)
        self.reference_window = parse_window(reference_window)
        self.false_alarm_days = float(false_alarm_days)
        self.mean_shifts_sd = tuple(float(d) for d in mean_shifts_sd)
        self.scale_ratio = None if scale_ratio is None else float(scale_ratio)
        self.window_size = window_size
        self.relearn = relearn
        # one CUSUM per row: (name, shift, A, B, C) with log-likelihood ratio A z + B z^2 + C
        tests: list[tuple[str, float, float, float, float]] = []
        for d in self.mean_shifts_sd:
            tests += [("mean_up", d, d, 0.0, -d * d / 2), ("mean_down", d, -d, 0.0, -d * d / 2)]
        if self.scale_ratio is not None:
            for name, s in (("scale_up", self.scale_ratio), ("scale_down", 1.0 / self.scale_ratio)):
                tests.append((name, s, 0.0, (1.0 - 1.0 / (s * s)) / 2, -math.log(s)))
        self._tests = tuple(tests)
        self._changes = tuple(
            f"mean up {d:g} sd" if name == "mean_up" else f"mean down {d:g} sd" if name == "mean_down"
            else f"spread {d:g}x wider" if name == "scale_up" else f"spread {1 / d:g}x narrower"
            for name, d, *_ in tests
        )
        self._coef = tuple((j, a, b, c) for j, (_, _, a, b, c) in enumerate(tests))
        self._fixed: tuple[list[float], list[int]] | None = None
        if self.reference:
            self._fixed = knots_and_counts(weighted)
        self._fresh(0)

    def _fresh(self, n: int) -> None:
        self._n = n
        self._t0 = self._t1 = math.nan
        self._win = array("f", [0.0] * self.window_size)
        self._win_n = 0
        self._skipped = 0  # events before the reference window: neither learned nor scored
        self._window_over = False
        self._fresh_reference(self._fixed)

    def _fresh_reference(self, fixed: tuple[list[float], list[int]] | None) -> None:
        self._knots, self._counts = (list(fixed[0]), list(fixed[1])) if fixed else ([], [])
        self._ready = False
        self._ztab: list[float] = []
        self._ref_summary: dict[str, float] = {}
        self._theta = [(1.0, 0.0)] * len(self._tests)  # (Lundberg theta, reference-error a)
        self._h = [math.inf] * len(self._tests)
        self._rate_used = 0.0
        self._m = len(self._tests)  # the CUSUMs sharing the budget
        self._s = [0.0] * len(self._tests)
        self._start = [self._n] * len(self._tests)  # event after which each CUSUM last left 0
        self._active, self._cause = False, 0
        self._from_window = False
        if fixed:
            self._finish_reference(solve=True)

    # --- learning and scoring --------------------------------------------------------
    def update(self, x: float, ts: float) -> Score:
        if not math.isfinite(x):
            return Score(0.0, False, 0.0, _QUIET)
        self._n += 1
        if self._n == 1:
            self._t0 = self._t1 = ts
        elif ts > self._t1:
            self._t1 = ts
        self._win[self._win_n % self.window_size] = x
        self._win_n += 1
        if not self._ready:
            window = self.reference_window
            if window is None or self._window_over:
                return self._learn(x)
            if ts < window[1]:
                if ts < window[0]:
                    self._skipped += 1
                else:
                    self._add_reference(x)
                return Score(0.0, False, 0.0, _QUIET)
            self._window_over = True
            if sum(self._counts) < MIN_REFERENCE:
                return self._learn(x)  # the window passed before the series began: learn its first events
            self._finish_reference(solve=True)
            self._from_window = True
        rate = max(self._n - 1, 1) / max(self._t1 - self._t0, 1.0)
        if rate > self._rate_used * _RATE_STEP or rate * _RATE_STEP < self._rate_used:
            self._calibrate(rate)
        knots = self._knots
        z = self._ztab[bisect_left(knots, x) + bisect_right(knots, x)]
        zz = z * z
        s, h, start, n = self._s, self._h, self._start, self._n
        ratio, worst = 0.0, -1
        for j, a, b, c in self._coef:
            hj = h[j]
            v = s[j] + a * z + b * zz + c
            if v <= 0.0 or hj == math.inf:
                s[j] = 0.0
                start[j] = n  # the change, if one is building, began after this event
                continue
            if v > _CAP * hj:
                v = _CAP * hj  # capped, so the verdict resolves soon after the data return
            s[j] = v
            if v > ratio * hj:
                ratio, worst = v / hj, j
        if ratio < (_RELEASE if self._active else 1.0):
            self._active = False
            return Score(min(ratio, 1.0), False, ratio, _QUIET)
        if self._active and s[self._cause] >= ratio * h[self._cause] * (1.0 - 1e-9):
            worst = self._cause  # the test that raised the alarm, while it is as strong as any
        self._active, self._cause = True, worst
        evidence = self._evidence(worst)
        if self.relearn:  # start over: the next reference_size events become the reference
            self._fresh_reference(None)
        return Score(min(ratio, 1.0), True, ratio, evidence)

    def _learn(self, x: float) -> Score:
        """One more reference value: a knot while there are fewer than 256, then a count."""
        self._add_reference(x)
        if sum(self._counts) >= self.reference_size:
            self._finish_reference(solve=True)
            return Score(0.0, False, 0.0, _QUIET)
        if self.relearn and self._n - self._skipped > sum(self._counts):  # relearning after a drift: still active
            return Score(1.0, True, 1.0, self._evidence(-1))
        return Score(0.0, False, 0.0, _QUIET)

    def _add_reference(self, x: float) -> None:
        knots, counts = self._knots, self._counts
        if len(knots) < KNOTS:
            i = bisect_left(knots, x)
            if i < len(knots) and knots[i] == x:
                counts[2 * i + 1] += 1
            else:
                knots.insert(i, x)
                counts[2 * i : 2 * i + 1] = [counts[2 * i] if counts else 0, 1, 0]
        else:
            counts[bisect_left(knots, x) + bisect_right(knots, x)] += 1

    # --- the reference and the thresholds ----------------------------------------------
    def _finish_reference(self, *, solve: bool) -> None:
        """Counts per cell -> standardised normal score per cell (mid-ranks, ties shared)."""
        counts = np.array(self._counts, dtype=float)
        n = counts.sum()
        below = np.cumsum(counts) - counts
        inv = NormalDist().inv_cdf
        raw = np.array([inv(float(u)) for u in (below + counts / 2 + 0.5) / (n + 1)])
        weights = counts / n
        mean = float(weights @ raw)
        sd = max(math.sqrt(float(weights @ (raw - mean) ** 2)), _MIN_SCALE)
        z = (raw - mean) / sd
        self._ztab = z.tolist()
        self._ref_summary = summary("reference", self._reference_sample())
        self._ready = True
        self._rate_used = 0.0  # calibrate at the next event
        if solve:
            self._theta = sensitivities(self._tests, z, weights, int(n))

    def _calibrate(self, rate: float) -> None:
        """Per-CUSUM thresholds for at most one expected false alarm per budget period.

        Tests that cannot be calibrated from this reference are skipped (``h = inf``)
        and leave their share of the budget to the others.
        """
        self._rate_used = rate
        first = self._thresholds(rate, len(self._tests))
        self._m = sum(1 for v in first if v < math.inf) or len(self._tests)
        again = self._thresholds(rate, self._m)
        self._h = [v if f < math.inf else math.inf for v, f in zip(again, first, strict=True)]

    def _thresholds(self, rate: float, m: int) -> list[float]:
        arl = m * rate * self.false_alarm_days * _DAY_S
        h = []
        for (name, d, *_), (theta, a) in zip(self._tests, self._theta, strict=True):
            if name.startswith("mean"):  # Siegmund: ARL0 = exp(h + 1.166 d) / (d^2 / 2)
                u = solve(math.log(max(arl * d * d / 2, 1.0)), a) - _SIEGMUND * d
            else:  # Lorden: ARL0 >= exp(h)
                u = solve(math.log(max(arl, 1.0)), a)
            h.append(max(u, 1.0) / theta)
        return h

    # --- evidence and reports --------------------------------------------------------
    def _current(self) -> list[float]:
        w, size = self._win_n, self.window_size
        if w <= size:
            return self._win[:w].tolist()
        p = w % size
        return (self._win[p:] + self._win[:p]).tolist()

    def _evidence(self, j: int) -> Mapping[str, Any]:
        k = min(self._win_n, self.window_size)
        evidence: dict[str, Any] = {
            "reference_n": sum(self._counts), "window_size": k,
            "reference_source": source_label(self._fixed is not None, self.reference_window, self._from_window, self.reference_size),
        }  # fmt: skip
        if j >= 0:
            name, d, *_ = self._tests[j]
            evidence.update(
                test=name, shift=d, change=self._changes[j], since_events=self._n - self._start[j],
                statistic=self._s[j], threshold=self._h[j], rate_per_s=self._rate_used,
                tests=self._m, alpha_per_event=1.0 / (self._m * self._rate_used * self.false_alarm_days * _DAY_S),
                false_alarm_days=self.false_alarm_days, **self._ref_summary,
            )
        else:
            evidence["test"] = "relearning"
        return LazyEvidence(evidence, self._win[:k])

    def _reference_sample(self, limit: int = 1000) -> list[float]:
        """The reference rebuilt from knots and counts (cell midpoints), at most ``limit``."""
        knots, counts = self._knots, self._counts
        if not knots:
            return []
        n = sum(counts)
        step = max(1.0, n / limit)
        out, acc = [], 0.0
        for j, c in enumerate(counts):
            lo, hi = knots[max((j - 1) // 2, 0)], knots[min(j // 2, len(knots) - 1)]
            acc += c
            while acc >= step:
                out.append((lo + hi) / 2)
                acc -= step
        return out

    def report_samples(self) -> tuple[list[float], list[float]]:
        """The reference (at most 1000 values, rebuilt from its knots) and the current window."""
        return self._reference_sample(), self._current()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"reference_size": 100}

    # --- checkpoints ------------------------------------------------------------------
    def _dump(self) -> Any:
        learned = self._fixed is None or self._knots != self._fixed[0] or self._counts != self._fixed[1]
        return {
            "n": self._n, "t0": num(self._t0), "t1": num(self._t1), "win": pack(self._current()),
            "win_n": self._win_n, "knots": pack(self._knots, "d") if learned else None,
            "counts": self._counts if learned else None, "ready": self._ready,
            "theta": [list(v) for v in self._theta], "h": [num(v) for v in self._h],
            "rate_used": self._rate_used, "m": self._m, "s": self._s, "start": self._start,
            "active": self._active, "cause": self._cause,
            "window": [self._skipped, self._window_over, self._from_window],
        }

    def _load(self, state: Any) -> None:
        self._fresh(int(state["n"]))
        self._win_n = int(state["win_n"])
        self._t0 = math.nan if state["t0"] is None else float(state["t0"])
        self._t1 = math.nan if state["t1"] is None else float(state["t1"])
        current = unpack(state["win"])
        for i, v in enumerate(current, start=self._win_n - len(current)):
            self._win[i % self.window_size] = v
        if state["knots"] is not None:
            self._knots, self._counts = unpack(state["knots"], "d"), [int(c) for c in state["counts"]]
            self._ready = False
            if state["ready"]:
                self._finish_reference(solve=False)
        self._theta = [(float(t), float(a)) for t, a in state["theta"]]
        self._h = [math.inf if v is None else float(v) for v in state["h"]]
        self._rate_used = float(state["rate_used"])
        self._m = int(state["m"])
        self._s = [float(v) for v in state["s"]]
        self._start = [int(v) for v in state["start"]]
        self._active, self._cause = bool(state["active"]), int(state["cause"])
        skipped, over, from_window = state.get("window", (0, False, False))
        self._skipped, self._window_over, self._from_window = int(skipped), bool(over), bool(from_window)
