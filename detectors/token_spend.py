"""LLM token spend: budget burn-rate projection, and spikes and sustained growth against the
series' own baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.duration import format_duration
from agent.errors import DetectorError
from agent.model import Score

from ._token_growth import SizeGrowthCusum
from ._windows import BUCKETS, BucketWindow, durations, is_number, seconds
from .base import Detector

__all__ = ["TokenSpend"]

_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_DAY_S = 86400.0


class TokenSpend(Detector):
    """Token or dollar spend of a series: budget burn, and spikes or growth over its baseline.

    The observation is a non-negative amount per LLM request: ``spend_usd`` (the
    event's ``cost_usd`` or its tokens priced) for the budget test, or a token count
    (``total_tokens``, ``completion_tokens``) for spikes and growth. Three tests, each
    switched on by its parameters; the verdict is active when any is.

    *Budget burn* (``budget_usd`` set): the spend rate over each of ``burn_windows_s``
    is projected to the time at which it would spend a whole period's budget
    (``budget_usd / rate``); active when every window projects that within
    ``alert_horizon_s`` ("tenant X is on course to spend its monthly budget in 2.1
    days"). The long window confirms the short one, as in the SRE workbook's burn-rate
    alerts, and the short one makes the alert resolve soon after the spending stops.
    Until a series is as old as a window, that window's rate is taken over the series'
    age (but never over less than the shortest window).

    *Spike* (``spike_window_s`` set): two views of the last ``spike_window_s``, each
    against the series' own exponentially weighted baseline, both winsorised at the
    alert level so that a spike teaches the baseline little. The *rate* test compares
    the window's sum with the baseline of that same sum (sampled at every bucket,
    bias-corrected); its deviation is the larger of the learned one and the
    compound-Poisson one implied by the request sizes, and its z is taken on the
    square-root scale, where the right tail of a sum of a few dozen heavy-tailed
    requests is close to normal. It catches runaway loops (more requests). The *size*
    test compares the window's mean request with the baseline mean request (z from the
    baseline's spread over the window's request count). It catches a prompt that makes
    every answer longer, even on a bursty series. Either is active when its ratio is at
    least ``spike_factor`` AND its z at least ``spike_z``, with ``min_events`` requests
    in the window. Nothing is said before the series is ``min_baseline_s`` old. A
    silence longer than the window counts as one window of zeros, so a series that
    sleeps overnight does not page at its first busy minute. Samples are winsorised at
    the level where they would alert, so a lasting new level is still learned: a
    permanent 10x stays active for about 40 minutes on a series some hours old (the
    budget test is the one that keeps watching sustained spend).

    *Growth* (``growth_factor`` set): a slow rise of the typical request, such as a
    doubling over 20 minutes, which the spike baseline learns as it happens. Page's
    one-sided CUSUM adds up, request by request, the log-likelihood ratio of "log size
    shifted by ``ln(growth_factor)``" against "no shift" over a baseline of log sizes
    (half-life ``growth_half_life_s``). The ratio is divided by the series' learned
    overdispersion (requests come in clusters), and each request counts as at most two
    deviations above the baseline. The sum grows while requests run above
    ``sqrt(growth_factor)`` x the baseline's typical (geometric mean) size, and the
    test is active once it reaches ``growth_threshold``. While the sum builds, or the
    last few minutes' requests run above the baseline, the baseline learns 16 times
    slower, so a ramp is measured against the level it left. Once the test fires, the
    baseline learns at full pace, so a lasting new level becomes normal (a permanent
    doubling is active for 20 to 30 minutes). It watches the size of requests, not
    their rate: traffic that grows is ordinary (the budget test watches what it
    costs), whereas each request costing more is a fault at any traffic level. The
    evidence says over which window the rise built (``window_s``, ``events``), the
    typical and mean request over it against the baseline's, their ``ratio``, and the
    ``cusum`` against its ``threshold``. The test lets go once the sum is back at 0, or
    after 5 minutes without requests. Near ``sqrt(growth_factor)`` it fires in short
    runs, so a rule gives it ``keep_firing_for`` rather than ``for``.

    The verdict's ``value`` is the amount summed over the spike window (without spikes:
    the mean request of a growth, or the last request; for the budget test alone, the
    amount over the first burn window). State is fixed per series: 31 buckets per
    window (2 s buckets for a 1 m spike window, 2 and 12 min for the 1 h and 6 h budget
    windows) and 21 numbers for growth, under 2 KB serialised.

    Parameters
    ----------
    budget_usd
        The series' budget in USD per ``budget_period_s``; ``None`` turns the budget
        test off. The observation must then be in USD (``field: spend_usd``).
    budget_period_s
        Length of the budget period in seconds (30 days by default: a monthly budget).
    alert_horizon_s
        Active when the budget would be spent within this many seconds (3 days).
    burn_windows_s
        Windows, in seconds, over which the spend rate is measured; all must project
        exhaustion within the horizon.
    spike_window_s
        Window in seconds whose sum is compared with its baseline; ``None`` turns the
        spike test off.
    spike_factor
        Minimum ratio to the baseline (window sum or mean request) for a spike (3: a
        runaway loop or a 5x burst clears it within a minute, ordinary bursts do not).
    spike_z
        Minimum number of standard deviations above the baseline for a spike.
    baseline_half_life_s
        Half-life in seconds of the spike baseline (it follows slow trends, such as a
        daily ramp, at this pace).
    min_baseline_s
        Seconds of the series' history needed before a spike verdict.
    min_events
        Requests needed in the spike window before it can be active, so one huge
        request on a quiet series does not page.
    growth_factor
        The rise of the typical request that the growth test is tuned for; ``None``
        (the default) turns it off. Evidence builds while requests run above
        ``sqrt(growth_factor)`` x the baseline: 2.5 (1.58x) catches a doubling over 20
        minutes by about its end, and stays quiet on the natural wander of a tenant's
        typical request (up to 1.5x for minutes on the Azure LLM trace).
    growth_threshold
        The CUSUM's decision level, in log-likelihood units (a log of odds). Higher
        values mean fewer false alarms and later detection.
    growth_half_life_s
        Half-life in seconds of the growth test's baseline of log request sizes.

    Examples
    --------
    >>> import random
    >>> from detectors.token_spend import TokenSpend
    >>> rng = random.Random(7)
    >>> det = TokenSpend(spike_window_s=60.0)  # 2 requests/s, ~1,000 tokens; 5x from t=1800s
    >>> stream = [(i / 2, rng.lognormvariate(6.7, 0.6) * (5 if i >= 3600 else 1)) for i in range(4000)]
    >>> first = next(i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active)
    >>> first, stream[first][0]
    (3666, 1833.0)

    A tenant with a $3,000 monthly budget ($4.17 an hour) that goes from $3.60 to $72 an
    hour after 12 hours; it pages once the last 6 hours, too, put it on course to spend
    the budget within 3 days:

    >>> det = TokenSpend(budget_usd=3000.0, spike_window_s=None)
    >>> stream = [(i * 10.0, 0.01 if i < 4320 else 0.2) for i in range(10_000)]
    >>> first = next(i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active)
    >>> s = det.evaluate(stream[first][0])
    >>> first, round((stream[first][0] - 43200) / 60), round(s.evidence["exhaustion_days"], 1)
    (5522, 200, 3.0)

    A prompt whose answers grow from ~800 tokens to twice that over 20 minutes, from
    t=1800s. The spike test (factor 3) never fires on it; the growth test fires ten
    minutes into the ramp, on a run of requests 2.8x the baseline's typical one:

    >>> det = TokenSpend(growth_factor=2.5)
    >>> ramp = lambda ts: 1.0 + min(1.0, max(0.0, ts - 1800) / 1200)
    >>> stream = [(i / 2, rng.lognormvariate(6.7, 0.6) * ramp(i / 2)) for i in range(8000)]
    >>> first = next(i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active)
    >>> s = det.evaluate(stream[first][0])
    >>> stream[first][0], s.evidence["test"], round(s.evidence["ratio"], 2)
    (2426.5, 'growth', 2.76)

    References
    ----------
    Beyer, Murphy, Rensin, Kawahara, Thorne (eds.), *The Site Reliability Workbook*,
    O'Reilly 2018, chapter 5 "Alerting on SLOs" (burn rates over window pairs).
    Roberts, "Control chart tests based on geometric moving averages", Technometrics
    1 (1959): the exponentially weighted moving average chart.
    Page, "Continuous inspection schemes", Biometrika 41 (1954): the CUSUM.

    """

    kind = "token_spend"

    def __init__(
        self,
        *,
        budget_usd: float | None = None,
        budget_period_s: float = 30 * _DAY_S,
        alert_horizon_s: float = 3 * _DAY_S,
        burn_windows_s: tuple = (3600.0, 21600.0),
        spike_window_s: float | None = 60.0,
        spike_factor: float = 3.0,
        spike_z: float = 4.0,
        baseline_half_life_s: float = 3600.0,
        min_baseline_s: float = 600.0,
        min_events: int = 3,
        growth_factor: float | None = None,
        growth_threshold: float = 9.0,
        growth_half_life_s: float = 3600.0,
    ) -> None:
        if budget_usd is not None and (not is_number(budget_usd) or budget_usd <= 0):
            raise DetectorError(f"budget_usd must be a positive amount or null, got {budget_usd!r}")
        if budget_usd is None and spike_window_s is None and growth_factor is None:
            raise DetectorError(
                "nothing to detect: set budget_usd (budget burn), spike_window_s (spikes) or growth_factor (growth)"
            )
        self.budget_usd = None if budget_usd is None else float(budget_usd)
        self.budget_period_s = seconds("budget_period_s", budget_period_s)
        self.alert_horizon_s = seconds("alert_horizon_s", alert_horizon_s)
        self.burn_windows_s = durations("burn_windows_s", burn_windows_s)
        self.spike_window_s = None if spike_window_s is None else seconds("spike_window_s", spike_window_s)
        if not is_number(spike_factor) or spike_factor < 1.0:
            raise DetectorError(f"spike_factor must be a number >= 1, got {spike_factor!r}")
        self.spike_factor = float(spike_factor)
        if not is_number(spike_z) or spike_z <= 0:
            raise DetectorError(f"spike_z must be a positive number, got {spike_z!r}")
        self.spike_z = float(spike_z)
        self.baseline_half_life_s = seconds("baseline_half_life_s", baseline_half_life_s)
        if not is_number(min_baseline_s) or min_baseline_s < 0:
            raise DetectorError(f"min_baseline_s must be a non-negative number of seconds, got {min_baseline_s!r}")
        self.min_baseline_s = float(min_baseline_s)
        if isinstance(min_events, bool) or not isinstance(min_events, int) or min_events < 1:
            raise DetectorError(f"min_events must be an integer >= 1, got {min_events!r}")
        self.min_events = min_events
        if growth_factor is not None and (not is_number(growth_factor) or growth_factor <= 1.0):
            raise DetectorError(f"growth_factor must be a number > 1 or null, got {growth_factor!r}")
        self.growth_factor = None if growth_factor is None else float(growth_factor)
        if not is_number(growth_threshold) or growth_threshold <= 0:
            raise DetectorError(f"growth_threshold must be a positive number, got {growth_threshold!r}")
        self.growth_threshold = float(growth_threshold)
        self.growth_half_life_s = seconds("growth_half_life_s", growth_half_life_s)
        self._growth = (
            None
            if self.growth_factor is None
            else SizeGrowthCusum(self.growth_factor, self.growth_threshold, self.growth_half_life_s)
        )
        self._burn = tuple(BucketWindow(w) for w in self.burn_windows_s) if self.budget_usd is not None else ()
        self._burn_names = tuple(format_duration(w) for w in self.burn_windows_s)
        self._min_burn_s = min(self.burn_windows_s)
        self._spike = BucketWindow(self.spike_window_s) if self.spike_window_s is not None else None
        self._decay = 0.5 ** (self._spike.width_s / self.baseline_half_life_s) if self._spike else 1.0
        self._first_ts = math.nan
        self._ts = -math.inf
        # spike baseline: bias-corrected EW mean/variance of the window sum, EW moments of x
        self._weight = 0.0
        self._mean = 0.0
        self._var = 0.0
        self._x0 = 0.0
        self._x1 = 0.0
        self._x2 = 0.0

    # --- learning -------------------------------------------------------------------
    def update(self, x: float, ts: float) -> Score:
        if not x > 0.0:
            x = 0.0  # negative or NaN amounts count as nothing spent
        ts = self._advance(ts)
        for ring in self._burn:
            ring.add(x)
        if self._growth is not None:
            self._growth.update(x, ts, ts - self._first_ts >= self.min_baseline_s)
        if self._spike is not None:
            self._spike.add(x)
            if self._x1 > 0.0 and ts - self._first_ts >= self.min_baseline_s:
                x = min(x, self._alert_level(self._x1 / self._x0, self._x2 / self._x0))
            self._x0 += 1.0
            self._x1 += x
            self._x2 += x * x
        return self._score(ts)

    def evaluate(self, ts: float) -> Score:
        """Score the windows as they stand at ``ts``, expiring what fell out of them."""
        return self._score(self._advance(ts))

    def _advance(self, ts: float) -> float:
        if ts < self._ts:
            ts = self._ts  # event time only moves forward
        self._ts = ts
        if self._first_ts != self._first_ts:  # NaN: first observation
            self._first_ts = ts
        for ring in self._burn:
            index = math.floor(ts / ring.width_s)
            if index > ring.index:
                ring.advance(index)
        spike = self._spike
        if spike is not None:
            index = math.floor(ts / spike.width_s)
            if index > spike.index:
                steps = min(spike.advance(index), spike.size)
                if ts - self._first_ts >= spike.width_s * BUCKETS:
                    self._learn(spike.window(ts)[0], steps)
        return ts

    def _learn(self, s: float, steps: int) -> None:
        """One sample of the window sum, weighted for the ``steps`` buckets it stands for."""
        fade = self._decay**steps
        self._x0 *= fade
        self._x1 *= fade
        self._x2 *= fade
        if self._mean > 0.0 and self._ts - self._first_ts >= self.min_baseline_s:
            s = min(s, self._alert_level(self._mean, self._var + self._mean * self._mean))
        self._weight = self._weight * fade + (1.0 - fade)
        a = (1.0 - fade) / self._weight
        diff = s - self._mean
        self._mean += a * diff
        self._var = (1.0 - a) * (self._var + a * diff * diff)

    def _alert_level(self, mean: float, square: float) -> float:
        """Where a sample is winsorised: the level at which it would alert (factor x mean, and
        z standard deviations above it), so a spike teaches the baseline little while a
        lasting new level is still learned, a factor at a time."""
        return max(self.spike_factor * mean, mean + self.spike_z * math.sqrt(max(square - mean * mean, 0.0)))

    # --- scoring --------------------------------------------------------------------
    def _score(self, ts: float) -> Score:
        spike_score, spike_evidence, value = 0.0, None, 0.0
        if self._spike is not None:
            spike_score, spike_evidence, value = self._spike_test(ts)
        growth_score, growth_evidence = 0.0, None
        if self._growth is not None:
            growth_score, growth_evidence = self._growth.score(ts)
            if self._spike is None:
                value = growth_evidence["mean_size"] if growth_evidence else self._growth.last
        budget_score, budget_evidence = 0.0, None
        if self._burn:
            budget_score, budget_evidence, burn_value = self._budget_test(ts)
            if self._spike is None and self._growth is None:
                value = burn_value
        tests = (("budget", budget_evidence), ("growth", growth_evidence), ("spike", spike_evidence))
        if not any(e for _, e in tests):
            return Score(max(spike_score, growth_score, budget_score), False, value, _QUIET)
        evidence: dict[str, Any] = {}
        for name, found in tests:
            if found:
                evidence.update(_beside(found, spike_evidence) if name == "growth" else found)
        evidence["test"] = "+".join(name for name, found in tests if found)
        return Score(1.0, True, value, evidence)

    def _spike_test(self, ts: float) -> tuple[float, dict[str, Any] | None, float]:
        spike = self._spike
        assert spike is not None
        s, n = spike.window(ts)
        mean = self._mean
        if self._weight <= 0.0 or mean <= 0.0 or self._x0 <= 0.0 or ts - self._first_ts < self.min_baseline_s:
            return 0.0, None, s
        factor, z_min = self.spike_factor, self.spike_z
        enough = n / self.min_events
        # rate: the window's sum against the baseline of that sum
        sd = math.sqrt(self._var)
        if self._x1 > 0.0:
            sd = max(sd, math.sqrt(mean * self._x2 / self._x1))  # compound Poisson floor
        ratio = s / mean
        # z on the square-root scale (delta method: sd of sqrt(S) ~ sd / (2 sqrt(mean))), where
        # the right tail of a sum of a few dozen requests is close to normal; on the raw
        # scale it is skewed and a plain z pages on ordinary busy minutes of sparse series
        z = 2.0 * math.sqrt(mean) * (math.sqrt(s) - math.sqrt(mean)) / sd if sd > 0.0 else (math.inf if s > mean else 0.0)
        rate_score = min(ratio / factor, z / z_min, enough)
        # size: the window's mean request against the baseline request
        size_score = size_ratio = size_z = 0.0
        mu = self._x1 / self._x0
        if n > 0.0 and mu > 0.0:
            size_ratio = s / n / mu
            sigma = math.sqrt(max(self._x2 / self._x0 - mu * mu, 0.0) / n)
            size_z = (s / n - mu) / sigma if sigma > 0.0 else (math.inf if s / n > mu else 0.0)
            size_score = min(size_ratio / factor, size_z / z_min, enough)
        score = max(rate_score, size_score)
        if score < 1.0:
            return max(score, 0.0), None, s
        by_size = size_score > rate_score
        evidence = {
            "spike": "size" if by_size else "rate",
            "window_s": self.spike_window_s,
            "window_sum": s,
            "events": n,
            "baseline": mean,
            "baseline_sd": sd,
            "mean_size": s / n if n > 0.0 else 0.0,
            "baseline_size": mu,
            "ratio": size_ratio if by_size else ratio,
            "z": size_z if by_size else z,
        }
        return 1.0, evidence, s

    def _budget_test(self, ts: float) -> tuple[float, dict[str, Any] | None, float]:
        budget = self.budget_usd
        assert budget is not None
        age = ts - self._first_ts
        horizon = self.alert_horizon_s
        rates = []
        for ring, window_s in zip(self._burn, self.burn_windows_s, strict=True):
            spent = ring.window(ts)[0]
            rates.append(spent / min(window_s, max(age, self._min_burn_s)))
        value = self._burn[0].window(ts)[0]
        slowest = min(rates)
        score = min(1.0, slowest * horizon / budget)
        if slowest * horizon < budget:
            return score, None, value
        k = rates.index(slowest)
        exhaustion_s = budget / slowest
        evidence: dict[str, Any] = {
            "budget_usd": budget,
            "budget_period_s": self.budget_period_s,
            "alert_horizon_s": horizon,
            "burn_window_s": self.burn_windows_s[k],
            "exhaustion_s": exhaustion_s,
            "exhaustion_days": exhaustion_s / _DAY_S,
            "burn_rate": slowest * self.budget_period_s / budget,
            "spend_usd_per_h": slowest * 3600.0,
            "budget_usd_per_h": budget / self.budget_period_s * 3600.0,
        }
        for name, rate in zip(self._burn_names, rates, strict=True):
            evidence["exhaustion_" + name + "_s"] = budget / rate
        return 1.0, evidence, value

    # --- contract tests and checkpoints ---------------------------------------------
    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"min_baseline_s": 120.0, "growth_factor": 2.5}  # spike and growth both on

    def _dump(self) -> Any:
        return {
            "first_ts": None if math.isnan(self._first_ts) else self._first_ts,
            "ts": None if self._ts == -math.inf else self._ts,
            "burn": [ring.dump() for ring in self._burn],
            "spike": None if self._spike is None else self._spike.dump(),
            "baseline": [self._weight, self._mean, self._var, self._x0, self._x1, self._x2],
            "growth": None if self._growth is None else self._growth.dump(),
        }

    def _load(self, state: Any) -> None:
        self._first_ts = math.nan if state["first_ts"] is None else float(state["first_ts"])
        self._ts = -math.inf if state["ts"] is None else float(state["ts"])
        for ring, data in zip(self._burn, state["burn"], strict=True):
            ring.load(data)
        if self._spike is not None:
            self._spike.load(state["spike"])
        self._weight, self._mean, self._var, self._x0, self._x1, self._x2 = (float(v) for v in state["baseline"])
        if self._growth is not None:
            self._growth.load(state["growth"])


def _beside(growth: dict[str, Any], spike: dict[str, Any] | None) -> dict[str, Any]:
    """Growth evidence beside the spike's: the keys both have get a ``growth_`` prefix."""
    if not spike:
        return growth
    return {("growth_" + k if k in spike else k): v for k, v in growth.items()}
