"""A drop of a bounded score's mean (user feedback, an evaluation score), sequential so a
few events an hour are enough, with false alarms budgeted in time."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.errors import DetectorError
from agent.model import Score

from ._rank_cusum import finite
from ._windows import durations
from .base import Detector

__all__ = ["ScoreDrop"]

_QUIET: Mapping[str, Any] = MappingProxyType({})
_DAY_S = 86_400.0
_EPS = 1e-3  # means are kept inside (0, 1) so every log-likelihood ratio is finite
_CAP = 1.5  # the CUSUM stops at 1.5 thresholds, so a verdict ends soon after scores recover


class ScoreDrop(Detector):
    """Detect that a bounded score (thumbs up/down, a groundedness score) fell below its
    baseline, from few events.

    Use it on ``feedback`` events' ``score`` (in [-1, 1]) or on ``eval_score`` of ``llm``
    events (in [0, 1]), keyed by ``prompt_version`` so the page names the version. A
    windowed mean needs tens of events per window to tell a drop from noise, hours at a
    few feedback events an hour; this detector accumulates evidence event by event.
    Each score is scaled to ``u`` in [0, 1]. The baseline is a Bayesian mean: the
    ``prior_mean`` worth ``prior_weight`` events (the score a healthy version gets, so a
    new version that is bad from its first answer is compared with it), updated by the
    series' own scores once they are ``holdout_s`` old (so an incident never teaches the
    baseline that it is normal), older ones fading with ``baseline_half_life_s``. A
    one-sided CUSUM of the Bernoulli log-likelihood ratio of "mean ``p1 = p0 - drop``"
    against "mean ``p0``" (the baseline) adds ``u ln(p1/p0) + (1-u) ln((1-p1)/(1-p0))``
    per event. For any score in [0, 1] whose mean is at least ``p0`` that ratio's
    exponential has expectation at most 1 (it is convex in ``u``), so the CUSUM's
    in-control run length is at least ``exp(h)`` events whatever the scores' law
    (Lorden): the threshold is ``h = ln(r * false_alarm_days * 86400)`` at the series'
    event rate ``r``, at most one false alert per ``false_alarm_days``. An all-negative
    run against a baseline of 0.75 (on the [0, 1] scale) with ``drop = 0.25`` pages after
    ``h / ln(2) = 13`` events at 10 events an hour over 30 days. The CUSUM stops at 1.5
    thresholds and the verdict ends under half of one, so it resolves after a run of
    good scores as long as the bad run it took to fire.

    Parameters
    ----------
    low
        The lowest score (e.g. -1 for thumbs down).
    high
        The highest score (e.g. 1 for thumbs up).
    prior_mean
        The mean score of a healthy series, in score units: the baseline of a new series.
    prior_weight
        How many events the prior is worth; the series' own scores outweigh it after
        about this many.
    drop
        The fall of the mean to detect, in score units (0.5 on [-1, 1]: a quarter of
        the answers turning from thumbs up to thumbs down).
    holdout_s
        Scores are learned into the baseline only once this old (seconds or a duration).
    baseline_half_life_s
        Half-life of what the baseline learned (seconds or a duration).
    false_alarm_days
        The false-alarm budget: at most one false alert per this many days at the
        series' event rate.
    max_pending
        Most scores held back for the holdout; beyond it the oldest are learned early.

    Examples
    --------
    >>> import random
    >>> from detectors.score_drop import ScoreDrop
    >>> rng = random.Random(7)
    >>> det = ScoreDrop(prior_mean=0.5)  # 75 % thumbs up, 10 feedback events an hour
    >>> stream = [(i * 360.0, 1.0 if rng.random() < (0.75 if i < 300 else 0.3) else -1.0) for i in range(400)]
    >>> first = next(i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active)
    >>> first - 300  # feedback events after the drop to 30 % thumbs up (two hours)
    20

    References
    ----------
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    Lorden, G. (1971). Procedures for reacting to a change in distribution. The Annals
    of Mathematical Statistics 42(6), 1897-1908.
    Shafer, G., Vovk, V. (2019). Game-Theoretic Foundations for Probability and Finance:
    bounded observations and likelihood-ratio supermartingales.

    """

    kind = "score_drop"

    def __init__(
        self,
        *,
        low: float = -1.0,
        high: float = 1.0,
        prior_mean: float = 0.5,
        prior_weight: float = 20.0,
        drop: float = 0.5,
        holdout_s: float = 21600.0,
        baseline_half_life_s: float = 604800.0,
        false_alarm_days: float = 30.0,
        max_pending: int = 2000,
    ) -> None:
        if not (finite(low) and finite(high) and low < high):
            raise DetectorError(f"low and high must be finite numbers with low < high, got {low!r}, {high!r}")
        self.low, self.high = float(low), float(high)
        if not finite(prior_mean) or not low < prior_mean < high:
            raise DetectorError(f"prior_mean must lie strictly between low and high, got {prior_mean!r}")
        self.prior_mean = float(prior_mean)
        if not finite(prior_weight) or prior_weight <= 0:
            raise DetectorError(f"prior_weight must be a positive number of events, got {prior_weight!r}")
        self.prior_weight = float(prior_weight)
        if not finite(drop) or not 0 < drop < high - low:
            raise DetectorError(f"drop must be positive and less than high - low, got {drop!r}")
        self.drop = float(drop)
        self.holdout_s = durations("holdout_s", (holdout_s,))[0]
        self.baseline_half_life_s = durations("baseline_half_life_s", (baseline_half_life_s,))[0]
        if not finite(false_alarm_days) or false_alarm_days <= 0:
            raise DetectorError(f"false_alarm_days must be a positive number of days, got {false_alarm_days!r}")
        self.false_alarm_days = float(false_alarm_days)
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or not 1 <= max_pending <= 100_000:
            raise DetectorError(f"max_pending must be an integer between 1 and 100000, got {max_pending!r}")
        self.max_pending = max_pending
        self._clear()

    def _clear(self) -> None:
        self._sum = 0.0  # learned scores (on [0, 1]), decayed
        self._weight = 0.0
        self._learned_at: float | None = None
        self._pending: deque[tuple[float, float]] = deque()
        self._cusum = 0.0
        self._run_sum = 0.0
        self._run_n = 0
        self._first_ts: float | None = None
        self._seen = 0
        self._active = False

    def update(self, x: float, ts: float) -> Score:
        u = min(max((x - self.low) / (self.high - self.low), 0.0), 1.0)
        self._learn_until(ts)
        if self._first_ts is None:
            self._first_ts = ts
        self._seen += 1
        p0 = self._baseline()
        p1 = max(p0 - self.drop / (self.high - self.low), _EPS)
        llr = u * math.log(p1 / p0) + (1.0 - u) * math.log((1.0 - p1) / (1.0 - p0))
        h = self._threshold(ts)
        self._cusum = min(max(self._cusum + llr, 0.0), _CAP * h)
        if self._cusum == 0.0:
            self._run_sum, self._run_n = 0.0, 0
        else:
            self._run_sum += u
            self._run_n += 1
        self._pending.append((ts, u))
        if len(self._pending) > self.max_pending:
            self._learn(*self._pending.popleft())
        self._active = self._cusum >= (h / 2.0 if self._active else h)
        recent = self._scale(self._run_sum / self._run_n) if self._run_n else x
        if not self._active:
            return Score(min(self._cusum / h, 1.0), False, recent, _QUIET)
        return Score(1.0, True, recent, {
            "baseline_mean": round(self._scale(p0), 4),
            "recent_mean": round(recent, 4),
            "run_events": self._run_n,
            "drop": self.drop,
            "cusum": round(self._cusum, 3),
            "threshold": round(h, 3),
            "events": self._seen,
        })

    def _scale(self, u: float) -> float:
        return self.low + u * (self.high - self.low)

    def _baseline(self) -> float:
        prior = (self.prior_mean - self.low) / (self.high - self.low)
        mean = (prior * self.prior_weight + self._sum) / (self.prior_weight + self._weight)
        return min(max(mean, 2 * _EPS), 1.0 - _EPS)

    def _threshold(self, ts: float) -> float:
        assert self._first_ts is not None
        rate = self._seen / max(ts - self._first_ts, 3600.0)  # a young series counts at least an hour
        return max(math.log(rate * self.false_alarm_days * _DAY_S), 1.0)

    def _learn_until(self, ts: float) -> None:
        while self._pending and self._pending[0][0] <= ts - self.holdout_s:
            self._learn(*self._pending.popleft())

    def _learn(self, ts: float, u: float) -> None:
        if self._learned_at is not None and ts > self._learned_at:
            fade = 0.5 ** ((ts - self._learned_at) / self.baseline_half_life_s)
            self._sum *= fade
            self._weight *= fade
        self._learned_at = ts if self._learned_at is None else max(ts, self._learned_at)
        self._sum += u
        self._weight += 1.0

    def _dump(self) -> Any:
        return {
            "sum": self._sum, "weight": self._weight, "learned_at": self._learned_at,
            "pending": [list(p) for p in self._pending], "cusum": self._cusum,
            "run_sum": self._run_sum, "run_n": self._run_n, "first_ts": self._first_ts,
            "seen": self._seen, "active": self._active,
        }  # fmt: skip

    def _load(self, state: Any) -> None:
        self._clear()
        self._sum, self._weight = float(state["sum"]), float(state["weight"])
        self._learned_at = state["learned_at"]
        self._pending = deque((float(t), float(u)) for t, u in state["pending"])
        self._cusum = float(state["cusum"])
        self._run_sum, self._run_n = float(state["run_sum"]), int(state["run_n"])
        self._first_ts, self._seen, self._active = state["first_ts"], int(state["seen"]), bool(state["active"])

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"prior_mean": 0.6}

    @classmethod
    def _unit_test_stream(cls, seed: int, n: int = 400) -> list[tuple[float, Any]]:
        """Thumbs (1 or -1), 80 % up, then 20 % up, one a minute."""
        import random

        rng = random.Random(seed)
        return [(i * 60.0, 1.0 if rng.random() < (0.8 if i < n // 2 else 0.2) else -1.0) for i in range(n)]
