"""GPU pressure: saturation, memory exhaustion forecast, thermal and power throttling, XID errors, slowdown."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.errors import DetectorError
from agent.model import Score

from ._robust import median, theil_sen
from .base import Detector

__all__ = ["GpuPressure"]

_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_LEVEL_SIGNALS = ("saturation", "thermal", "power")
_SIGNALS = _LEVEL_SIGNALS + ("memory", "xid", "slowdown")
#: the parameters each signal reads; setting another signal's parameter is a mistake
_READS: dict[str, tuple[str, ...]] = {
    "saturation": ("saturation_pct", "sustain_s"),
    "thermal": ("throttle_temp_c", "sustain_s"),
    "power": ("power_cap_w", "sustain_s"),
    "memory": ("min_headroom_ratio", "horizon_s", "window_s"),
    "xid": (),
    "slowdown": ("slowdown_ratio", "baseline_n", "recent_n"),
}
_BUCKETS = 12  # the memory trend cuts window_s into this many event-time buckets
_MIN_BUCKETS = 4  # closed buckets needed before the first forecast
_HEADROOM_N = 3  # headroom is judged on the median of the last 3 samples
_SPREAD_K = 3.0  # a slowdown must also stand 3 robust standard deviations out of its baseline
_MAD_SIGMA = 1.4826  # MAD -> standard deviation under normal noise
_MAX_BASELINE_N = 256  # keeps a slowdown baseline's state under ~5 KB


class GpuPressure(Detector):
    """Pressure on one GPU (or one worker), read from one field of its ``gpu`` events.

    ``signal`` says what the observed field means, and so which test applies:

    * ``saturation`` (``util_pct``): at or above ``saturation_pct`` for ``sustain_s``;
    * ``thermal`` (``temp_c``): at or above ``throttle_temp_c`` for ``sustain_s``;
    * ``power`` (``power_w``): at or above ``power_cap_w`` for ``sustain_s``;
    * ``memory`` (``mem_used_ratio``): headroom below ``min_headroom_ratio`` (on the
      median of the last 3 samples), or a trend that reaches 1.0 within ``horizon_s``.
      The trend goes through the means of 12 event-time buckets of ``window_s / 12``:
      the Theil-Sen slope (median of pairwise slopes) of the older half and of the
      newer half, whichever is smaller. A lone spike or a single step (a model
      loading) rises in one half only and makes no trend; a steady leak, or a stepwise
      one stepping at least once per half window, does;
    * ``xid`` (``xid_errors``): any XID code or count above 0 is active at once;
    * ``slowdown`` (any positive time, e.g. a worker's mini-batch time): the median of
      the last ``recent_n`` samples is ``slowdown_ratio`` times the median of its own
      baseline (the last ``baseline_n`` samples that were not slow), and stands 3
      robust standard deviations (1.4826 MAD) above it, so a noisy series needs a
      clearer slowdown. A straggler is found against its own past, so workers that
      are always a little slower than their peers are not flagged.

    The score is the way to the verdict: the fraction of ``sustain_s`` held so far,
    ``horizon_s`` over the forecast time to exhaustion, or the slowdown's share of
    the way to ``slowdown_ratio``; 1.0 when active. Active verdicts carry their
    evidence: the limit or baseline, how long the condition has held, the window.

    Parameters
    ----------
    signal
        One of ``saturation``, ``memory``, ``thermal``, ``power``, ``xid``, ``slowdown``.
    saturation_pct
        Utilisation, in percent, at or above which a GPU counts as saturated.
    throttle_temp_c
        Temperature in degrees Celsius at or above which the GPU counts as throttling
        (datacenter GPUs start slowing down between 85 and 90 C).
    power_cap_w
        The board's enforced power limit in watts (DCGM_FI_DEV_POWER_MGMT_LIMIT);
        required by ``signal="power"``, which has no sane default across GPU models.
    sustain_s
        Event-time seconds the level signals must hold before the verdict is active;
        one sample below the limit starts the count again.
    min_headroom_ratio
        Free share of the frame buffer under which memory is active at once; 0 turns
        the floor off.
    horizon_s
        Memory is active when the trend reaches exhaustion (ratio 1.0) within this
        many seconds; 0 turns the forecast off.
    window_s
        Event-time span, in seconds, of the memory trend fit.
    slowdown_ratio
        How many times its baseline a series must take to count as slow (> 1).
    baseline_n
        Samples kept for the slowdown baseline (at most 256); verdicts start once
        half of them is in.
    recent_n
        Samples whose median is compared with the baseline, so a lone slow sample
        never fires.

    Examples
    --------
    A leak of 0.02 % of the frame buffer per second starts at t=600 s; the memory is
    full at t=4100 s. The forecast warns about half an hour ahead:

    >>> import random
    >>> from detectors.gpu_pressure import GpuPressure
    >>> rng = random.Random(7)
    >>> det = GpuPressure(signal="memory", window_s=1200.0, horizon_s=1800.0)
    >>> stream = [0.3 + 0.0002 * max(0, i - 600) + rng.gauss(0.0, 0.003) for i in range(4100)]
    >>> for i, x in enumerate(stream):
    ...     score = det.update(x, ts=float(i))
    ...     if score.active:
    ...         break
    >>> i, score.evidence["reason"], round(score.evidence["tte_s"])
    (2312, 'forecast', 1800)

    It fired 1788 s before the frame buffer is full, forecasting 1800 s.

    References
    ----------
    Sen, P. K. (1968). Estimates of the regression coefficient based on Kendall's tau.
    Journal of the American Statistical Association, 63(324), 1379-1389.

    """

    kind = "gpu_pressure"

    def __init__(
        self,
        *,
        signal: str = "saturation",
        saturation_pct: float = 90.0,
        throttle_temp_c: float = 85.0,
        power_cap_w: float | None = None,
        sustain_s: float = 300.0,
        min_headroom_ratio: float = 0.05,
        horizon_s: float = 1800.0,
        window_s: float = 1200.0,
        slowdown_ratio: float = 1.2,
        baseline_n: int = 64,
        recent_n: int = 3,
    ) -> None:
        if signal not in _SIGNALS:
            raise DetectorError(f"signal {signal!r} is not one of {', '.join(_SIGNALS)}")
        self.signal = signal
        self.saturation_pct = _number("saturation_pct", saturation_pct, low=0.0, high=100.0, low_open=True)
        self.throttle_temp_c = _number("throttle_temp_c", throttle_temp_c)
        self.power_cap_w = None if power_cap_w is None else _number("power_cap_w", power_cap_w, low=0.0, low_open=True)
        self.sustain_s = _number("sustain_s", sustain_s, low=0.0)
        self.min_headroom_ratio = _number("min_headroom_ratio", min_headroom_ratio, low=0.0, high=1.0, high_open=True)
        self.horizon_s = _number("horizon_s", horizon_s, low=0.0)
        self.window_s = _number("window_s", window_s, low=0.0, low_open=True)
        self.slowdown_ratio = _number("slowdown_ratio", slowdown_ratio, low=1.0, low_open=True)
        self.baseline_n = _count("baseline_n", baseline_n, 4, _MAX_BASELINE_N)
        self.recent_n = _count("recent_n", recent_n, 1, self.baseline_n)
        if signal == "power" and power_cap_w is None:
            raise DetectorError("signal 'power' needs power_cap_w, the board's power limit in watts")
        defaults = GpuPressure.__init__.__kwdefaults__ or {}
        for name, value in self.params().items():
            if name != "signal" and name not in _READS[signal] and value != defaults[name]:
                reads = ", ".join(_READS[signal]) or "no other parameter"
                raise DetectorError(f"{name} does not apply to signal {signal!r} (it reads {reads})")
        self._limit = {"saturation": self.saturation_pct, "thermal": self.throttle_temp_c}.get(
            signal, self.power_cap_w or 0.0
        )
        self._update = getattr(self, "_update_level" if signal in _LEVEL_SIGNALS else f"_update_{signal}")
        self._bucket_s = self.window_s / _BUCKETS
        self._load(None)

    def update(self, x: float, ts: float) -> Score:
        return self._update(float(x), float(ts))

    def evaluate(self, ts: float) -> Score:
        """The verdict at ``ts`` from what is known (no new sample): level signals count
        the time held, the memory forecast moves on; this never changes the state."""
        if math.isnan(self._last):
            return Score(0.0, False, math.nan, _QUIET)
        if self.signal in _LEVEL_SIGNALS:
            return self._level_verdict(ts)
        if self.signal == "memory":
            return self._memory_verdict(ts)
        if self.signal == "xid":
            return self._xid_verdict()
        return self._slowdown_verdict()

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"signal": "memory", "window_s": 120.0, "horizon_s": 600.0}

    @classmethod
    def _unit_test_stream(cls, seed: int, n: int = 400) -> list[tuple[float, Any]]:
        """Memory used ratio, one sample a second: flat at 0.4, then leaking 0.2 % a second."""
        import random

        rng = random.Random(seed)
        return [(float(i), 0.4 + 0.002 * max(0, i - n // 2) + rng.gauss(0.0, 0.005)) for i in range(n)]

    # --- saturation, thermal, power: at or above a limit for sustain_s -----------------
    def _update_level(self, x: float, ts: float) -> Score:
        self._last = x
        if x < self._limit:
            self._since = None
        elif self._since is None:
            self._since = ts
        return self._level_verdict(ts)

    def _level_verdict(self, ts: float) -> Score:
        since = self._since
        if since is None:
            return Score(0.0, False, self._last, _QUIET)
        held = max(0.0, ts - since)
        if held < self.sustain_s:
            return Score(held / self.sustain_s, False, self._last, _QUIET)
        evidence = {"signal": self.signal, "limit": self._limit, "held_s": held, "sustain_s": self.sustain_s}
        return Score(1.0, True, self._last, evidence)

    # --- memory: headroom floor and time-to-exhaustion forecast ------------------------
    def _update_memory(self, x: float, ts: float) -> Score:
        self._last = x
        self._recent.append(x)
        index = math.floor(ts / self._bucket_s)
        if index != self._b_index:
            if self._b_n:
                self._close_bucket(ts)
            self._b_index, self._b_n, self._b_t, self._b_x = index, 0, 0.0, 0.0
        self._b_n += 1
        self._b_t += ts
        self._b_x += x
        return self._memory_verdict(ts)

    def _close_bucket(self, ts: float) -> None:
        closed = self._closed
        closed.append((self._b_t / self._b_n, self._b_x / self._b_n))
        while closed and closed[0][0] < ts - self.window_s:
            closed.popleft()
        self._fit()

    def _fit(self) -> None:
        """Slope: the smaller Theil-Sen slope of the older and the newer half of the buckets
        (a single step rises in one half only); level: at the last bucket, from the newer half."""
        pts = list(self._closed)
        n = len(pts)
        if n < _MIN_BUCKETS:
            self._slope = math.nan
            return
        newer = pts[n // 2 :]
        self._slope = min(theil_sen(pts[: (n + 1) // 2]), theil_sen(newer))
        t_ref = self._t_ref = pts[-1][0]
        self._level = median(sorted(x + self._slope * (t_ref - t) for t, x in newer))

    def _memory_verdict(self, ts: float) -> Score:
        x = self._last
        slope = self._slope
        tte = math.inf
        if slope > 0.0:
            tte = max(0.0, (1.0 - (self._level + slope * (ts - self._t_ref))) / slope)
        headroom = 1.0 - median(sorted(self._recent))
        low = headroom < self.min_headroom_ratio
        soon = tte <= self.horizon_s and self.horizon_s > 0.0
        if not (low or soon):
            score = self.horizon_s / tte if math.isfinite(tte) and tte > 0.0 else 0.0
            return Score(score, False, x, _QUIET)
        evidence = {
            "signal": "memory",
            "reason": "headroom" if low else "forecast",
            "headroom_ratio": headroom,
            "min_headroom_ratio": self.min_headroom_ratio,
            "tte_s": tte,
            "horizon_s": self.horizon_s,
            "slope_per_s": slope,
            "window_s": self.window_s,
        }
        return Score(1.0, True, x, evidence)

    # --- xid: page at once ---------------------------------------------------------------
    def _update_xid(self, x: float, ts: float) -> Score:
        self._new = x > 0.0 and x != self._last
        self._last = x
        return self._xid_verdict()

    def _xid_verdict(self) -> Score:
        x = self._last
        if x > 0.0:
            return Score(1.0, True, x, {"signal": "xid", "xid": int(x), "new": self._new})
        return Score(0.0, False, x, _QUIET)

    # --- slowdown against the series' own robust baseline --------------------------------
    def _update_slowdown(self, x: float, ts: float) -> Score:
        self._last = x
        self._recent.append(x)
        base = self._sorted
        if len(base) < max(4, self.baseline_n // 2) or x < median(base) * self.slowdown_ratio:
            self._base.append(x)
            insort(base, x)
            if len(self._base) > self.baseline_n:
                del base[bisect_left(base, self._base.popleft())]
        return self._slowdown_verdict()

    def _slowdown_verdict(self) -> Score:
        base = self._sorted
        if len(base) < max(4, self.baseline_n // 2):
            return Score(0.0, False, self._last, _QUIET)
        baseline = median(base)
        recent = median(sorted(self._recent))
        if baseline <= 0.0:
            return Score(0.0, False, self._last, _QUIET)
        ratio = recent / baseline
        quiet = ratio < self.slowdown_ratio
        if not quiet:  # the spread is only needed here, which keeps the common path cheap
            spread = _MAD_SIGMA * median(sorted(abs(x - baseline) for x in base))
            quiet = recent - baseline < _SPREAD_K * spread
        if quiet:
            return Score(min(0.99, max(0.0, (ratio - 1.0) / (self.slowdown_ratio - 1.0))), False, self._last, _QUIET)
        evidence = {
            "signal": "slowdown",
            "baseline": baseline,
            "recent": recent,
            "ratio": ratio,
            "spread": spread,
            "slowdown_ratio": self.slowdown_ratio,
            "baseline_n": len(base),
            "recent_n": self.recent_n,
        }
        return Score(1.0, True, self._last, evidence)

    # --- checkpoints ---------------------------------------------------------------------
    def _dump(self) -> Any:
        return {
            "last": None if math.isnan(self._last) else self._last,
            "since": self._since,
            "new": self._new,
            "bucket": [self._b_index, self._b_n, self._b_t, self._b_x],
            "closed": [list(p) for p in self._closed],
            "base": list(self._base),
            "recent": list(self._recent),
        }

    def _load(self, state: Any) -> None:
        state = state or {"bucket": [None, 0, 0.0, 0.0], "closed": [], "base": [], "recent": []}
        last = state.get("last")
        self._last = math.nan if last is None else float(last)
        self._since = state.get("since")
        self._new = bool(state.get("new", False))
        self._b_index, self._b_n, self._b_t, self._b_x = state["bucket"]
        self._closed: deque[tuple[float, float]] = deque(((float(t), float(x)) for t, x in state["closed"]), maxlen=_BUCKETS)
        self._slope, self._t_ref, self._level = math.nan, 0.0, 0.0
        self._fit()
        self._base: deque[float] = deque(float(x) for x in state["base"])
        self._sorted: list[float] = sorted(self._base)
        recent_n = _HEADROOM_N if self.signal == "memory" else self.recent_n
        self._recent: deque[float] = deque((float(x) for x in state["recent"]), maxlen=recent_n)


def _number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DetectorError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise DetectorError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise DetectorError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return float(value)


def _count(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DetectorError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value

