"""Sustained growth of the amount per request: a one-sided CUSUM of log request sizes.

``token_spend``'s spike test compares one short window with a baseline that keeps
learning, so a doubling spread over twenty minutes never reaches its factor: the
baseline climbs with the ramp. This test adds up the evidence request by request,
against a baseline that almost stops learning while the evidence builds, which is
what a slow ramp needs.

It watches the size of each request (tokens or USD per request), not the series' rate.
Traffic grows for ordinary reasons: the morning ramp, or the Azure conversation
trace's own rise from 380k to 800k tokens a minute within fifteen minutes. That
spending is the budget test's business. A request that costs twice what the same
series' requests used to cost is a fault whatever the traffic: a prompt that makes
every answer longer, an agent whose context snowballs, a switch to a dearer model.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SizeGrowthCusum"]

#: while the series is suspect the baseline learns this many times slower, so a ramp is
#: not learned while it happens. Suspect: the CUSUM is building (above 0, below its
#: threshold), or the recent requests (EW over ``RECENT_HALF_LIFE_S``) run more than
#: ``SUSPECT_SHIFT`` of the design shift above the baseline (1.26x for a factor of 2.5).
#: Once the test fires, the baseline learns at full pace, so a lasting new level
#: becomes normal within about a half-life.
SUSPECT_SLOWDOWN = 16.0
SUSPECT_SHIFT = 0.25
RECENT_HALF_LIFE_S = 120.0
#: the CUSUM is capped at this multiple of its threshold, so the alert resolves soon
#: after the growth is learned or gone instead of working off hours of excess
CAP = 1.5
#: once fired, the test stays active until the CUSUM is back at 0, and for this many
#: half-lives after that the baseline keeps learning at full pace: a lasting new level
#: becomes the new normal instead of paging again each time it wavers
SETTLE_HALF_LIVES = 1.0
#: requests the baseline must hold (EW weight) before the test says anything
MIN_BASELINE_EVENTS = 30.0
#: the log-scale deviation of the sizes is never taken below this (on a constant
#: series, every small change would otherwise look infinitely significant)
MIN_LOG_SD = 0.05
#: a request counts as at most ``SD_CAP`` of the baseline's deviations above it
#: (Huber's winsorising), but never less than one design shift nor more than
#: ``STEP_CAP``, so a handful of huge requests cannot carry the test alone, and a
#: series of near-identical requests can still show a shift
STEP_CAP = 2.0
SD_CAP = 2.0
#: clustering: requests are not independent (one user's session sends similar
#: prompts), so the evidence is divided by the overdispersion of the ``BLOCK_S`` means
#: of log size (their variance over the one independent requests would give), learned
#: per series from successive blocks and starting from a prior of ``PHI_PRIOR`` worth
#: ``PHI_PRIOR_BLOCKS`` blocks. The Azure trace's tenants show 1 to 2.6 over a minute.
BLOCK_S = 60.0
PHI_PRIOR = 2.0
PHI_PRIOR_BLOCKS = 5.0
PHI_SAMPLE_CAP = 10.0  # one wild block teaches the overdispersion at most this much
#: an alert whose series stops sending resolves after this much silence
STALE_S = 300.0


class SizeGrowthCusum:
    """Page's one-sided CUSUM for a rise of the typical request by ``factor``.

    Sizes are compared on the log scale. There a scale change of ``factor`` is a shift
    of ``d = ln(factor)``, whatever the shape of the size distribution, and one huge
    request counts for little. Each request of log size ``y`` adds the log-likelihood
    ratio of that shift against none, for a normal log size with the baseline's mean
    ``m`` and variance ``s2``, divided by the learned overdispersion ``phi``:
    ``d / s2 * (min(y - m, c) - d / 2) / phi``, with the cap ``c`` two deviations
    (but at least ``d`` and at most ``2 d``). The sum (floored at 0) rises while
    requests run above ``sqrt(factor)`` x the baseline's typical size, and the test is
    active once it reaches ``threshold``, a log of odds. Wald's bound puts at least
    ``e**threshold`` requests between false alarms on a series that fits the model. In
    practice there are far more: none in 1.5 million log-normal requests at 9.

    The baseline is the EW mean and variance of log sizes, with a half-life of
    ``half_life_s`` of event time. Requests of size 0 carry no size and are skipped.
    """

    __slots__ = (
        "factor", "threshold", "half_life_s", "_shift", "ts", "w0", "w1", "w2", "r0", "r1",
        "cusum", "firing", "settled_at", "run_start", "run_events", "run_log_sum", "run_sum", "last",
        "block", "block_n", "block_dev", "prev_n", "prev_mean", "phi_w", "phi_sum",
    )  # fmt: skip

    def __init__(self, factor: float, threshold: float, half_life_s: float) -> None:
        self.factor, self.threshold, self.half_life_s = factor, threshold, half_life_s
        self._shift = math.log(factor)
        self.ts = math.nan  # event time of the last request learned
        self.w0 = self.w1 = self.w2 = 0.0  # EW moments of the log sizes
        self.r0 = self.r1 = 0.0  # the same, of the recent ones
        self.cusum = 0.0
        self.firing = False
        self.settled_at = -math.inf  # the baseline learns at full pace until then, after a fire
        self.run_start = math.nan  # when the current rise began (the CUSUM last left 0)
        self.run_events = 0
        self.run_log_sum = 0.0
        self.run_sum = 0.0
        self.last = 0.0  # the last request's size: the verdict's value while quiet
        self.block = -(2**62)  # the open overdispersion block, its requests and deviation
        self.block_n = 0
        self.block_dev = 0.0
        self.prev_n, self.prev_mean = 0, 0.0  # the previous block's requests and mean deviation
        self.phi_w = self.phi_sum = 0.0  # EW weight and sum of the blocks' dispersion

    # --- learning -------------------------------------------------------------------
    def update(self, x: float, ts: float, scoring: bool) -> None:
        """Score one request of size ``x`` (when ``scoring``: the series is old enough),
        then learn from it."""
        if not x > 0.0:
            return
        self.last = x
        y = math.log(x)
        self._close_block(ts)
        # the pace is set before this request is scored: were it set after, the requests
        # that start a rise (the high ones) would be learned slowly and bias the baseline low
        pace = SUSPECT_SLOWDOWN if self._suspect(ts) else 1.0
        if self.w0 >= MIN_BASELINE_EVENTS:
            m, s2 = self._moments()
            self.block_n += 1
            self.block_dev += y - m
            if scoring:
                self._step(x, y, ts, m, s2)
        dt = ts - self.ts if self.ts == self.ts else 0.0
        fade = 0.5 ** (max(dt, 0.0) / (self.half_life_s * pace))
        recent = 0.5 ** (max(dt, 0.0) / RECENT_HALF_LIFE_S)
        self.r0 = self.r0 * recent + 1.0
        self.r1 = self.r1 * recent + y
        self.ts = ts
        weight = 1.0 / pace
        self.w0 = self.w0 * fade + weight
        self.w1 = self.w1 * fade + weight * y
        self.w2 = self.w2 * fade + weight * y * y

    def _step(self, x: float, y: float, ts: float, m: float, s2: float) -> None:
        d = self._shift
        cap = min(STEP_CAP * d, max(SD_CAP * math.sqrt(s2), d))
        step = d / s2 * (min(y - m, cap) - d / 2.0) / self._phi()
        if self.cusum <= 0.0 and step > 0.0:
            self.run_start, self.run_events, self.run_log_sum, self.run_sum = ts, 0, 0.0, 0.0
        self.cusum = min(max(0.0, self.cusum + step), CAP * self.threshold)
        if self.cusum >= self.threshold:
            self.firing = True
        elif self.firing and self.cusum <= 0.0:
            self.firing = False
            self.settled_at = ts + SETTLE_HALF_LIVES * self.half_life_s
        if self.cusum > 0.0:
            self.run_events += 1
            self.run_log_sum += y
            self.run_sum += x

    def _close_block(self, ts: float) -> None:
        """Learn the overdispersion from the block that ended before ``ts``, if any."""
        block = math.floor(ts / BLOCK_S)
        if block <= self.block:
            return
        if self.block_n >= 2 and self.prev_n >= 2 and block - self.block <= 2:
            # successive blocks' difference (von Neumann): a trend, such as the ramp being
            # watched for, hardly moves it, where a deviation from the baseline would grow
            _, s2 = self._moments()
            diff = self.block_dev / self.block_n - self.prev_mean
            sample = min(diff * diff / (s2 * (1.0 / self.block_n + 1.0 / self.prev_n)), PHI_SAMPLE_CAP)
            pace = SUSPECT_SLOWDOWN if self._suspect(ts) else 1.0
            fade = 0.5 ** (BLOCK_S * (block - self.block) / (self.half_life_s * pace))
            self.phi_w = self.phi_w * fade + 1.0 / pace
            self.phi_sum = self.phi_sum * fade + sample / pace
        if self.block_n >= 2:
            self.prev_n, self.prev_mean = self.block_n, self.block_dev / self.block_n
        else:
            self.prev_n = 0
        self.block, self.block_n, self.block_dev = block, 0, 0.0

    def _suspect(self, ts: float) -> bool:
        if self.firing or ts < self.settled_at or self.w0 < MIN_BASELINE_EVENTS:
            return False
        return self.cusum > 0.0 or self.r1 / self.r0 - self.w1 / self.w0 > SUSPECT_SHIFT * self._shift

    def _phi(self) -> float:
        return max(1.0, (PHI_PRIOR * PHI_PRIOR_BLOCKS + self.phi_sum) / (PHI_PRIOR_BLOCKS + self.phi_w))

    def _moments(self) -> tuple[float, float]:
        m = self.w1 / self.w0
        return m, max(self.w2 / self.w0 - m * m, MIN_LOG_SD * MIN_LOG_SD)

    # --- scoring --------------------------------------------------------------------
    def score(self, ts: float) -> tuple[float, dict[str, Any] | None]:
        """(score in [0, 1], evidence when active) as the series stands at ``ts``."""
        if self.w0 <= 0.0 or ts - self.ts > STALE_S:
            return 0.0, None
        if not self.firing or self.run_events == 0:
            return min(self.cusum / self.threshold, 0.999), None
        m, s2 = self._moments()
        typical = math.exp(self.run_log_sum / self.run_events)
        baseline = math.exp(m)
        return 1.0, {
            "window_s": ts - self.run_start,
            "events": self.run_events,
            "mean_size": self.run_sum / self.run_events,
            "typical_size": typical,
            "baseline_size": baseline,
            "baseline_log_sd": math.sqrt(s2),
            "ratio": typical / baseline,
            "cusum": self.cusum,
            "threshold": self.threshold,
            "overdispersion": self._phi(),
            "growth_factor": self.factor,
        }

    # --- checkpoints ----------------------------------------------------------------
    def dump(self) -> list[Any]:
        return [
            None if math.isnan(self.ts) else self.ts, self.w0, self.w1, self.w2, self.r0, self.r1, self.cusum, self.firing,
            None if self.settled_at == -math.inf else self.settled_at,
            None if math.isnan(self.run_start) else self.run_start, self.run_events, self.run_log_sum,
            self.run_sum, self.last, self.block, self.block_n, self.block_dev, self.prev_n, self.prev_mean,
            self.phi_w, self.phi_sum,
        ]  # fmt: skip

    def load(self, data: list[Any]) -> None:
        self.ts = math.nan if data[0] is None else float(data[0])
        self.w0, self.w1, self.w2, self.r0, self.r1, self.cusum = (float(v) for v in data[1:7])
        self.firing = bool(data[7])
        self.settled_at = -math.inf if data[8] is None else float(data[8])
        self.run_start = math.nan if data[9] is None else float(data[9])
        self.run_events = int(data[10])
        self.run_log_sum, self.run_sum, self.last = float(data[11]), float(data[12]), float(data[13])
        self.block, self.block_n, self.prev_n = int(data[14]), int(data[15]), int(data[17])
        self.block_dev, self.prev_mean = float(data[16]), float(data[18])
        self.phi_w, self.phi_sum = float(data[19]), float(data[20])
