"""Fixed threshold on an observation or on its aggregate over a sliding event-time window."""

from __future__ import annotations

import bisect
import math
import operator
import re
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from agent.errors import DetectorError
from agent.model import Score

from .base import Detector

__all__ = ["Threshold"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_PLAIN_AGGS = ("last", "mean", "max", "min", "sum", "count", "rate")
_QUANTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_QUIET: Mapping[str, Any] = MappingProxyType({})  # inactive verdicts carry no evidence
_score = tuple.__new__  # Score without its Python-level __new__: ~40 % cheaper per verdict
_insort, _bisect_left, _ceil = bisect.insort, bisect.bisect_left, math.ceil


class Threshold(Detector):
    """Compare an observation, or an aggregate of a sliding window of them, with a value.

    The Prometheus-style rule every SRE already knows (``p99 latency > 500 ms over 1m``),
    computed on the event stream so it reacts to the first bad events rather than to
    the next scrape. It learns nothing: use it where the limit is known (an SLO, a
    hard capacity); the adaptive detectors cover the rest.

    Parameters
    ----------
    op
        Comparison, one of ``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=``.
    threshold
        The value the aggregate is compared with, in the observed field's unit.
    agg
        ``last`` (the observation itself), ``mean``, ``max``, ``min``, ``sum``,
        ``count`` (events in the window), ``rate`` (sum per second of the window), or a
        quantile ``pNN`` such as ``p95`` or ``p99.9``.
    window_s
        Length of the sliding window in event-time seconds; 0 means the last value.
    min_count
        Events needed in the window before the detector gives an active verdict, so a
        single slow request on a quiet series does not page.
    max_samples
        Bound on the samples kept per series; the oldest are dropped beyond it.

    Examples
    --------
    >>> from detectors.threshold import Threshold
    >>> det = Threshold(op=">", threshold=500.0, agg="p90", window_s=10.0, min_count=5)
    >>> stream = [100.0] * 20 + [900.0] * 10
    >>> first = next(i for i, x in enumerate(stream) if det.update(x, ts=float(i)).active)
    >>> first
    21

    """

    kind = "threshold"

    def __init__(
        self,
        *,
        op: str = ">",
        threshold: float = 0.0,
        agg: str = "last",
        window_s: float = 0.0,
        min_count: int = 1,
        max_samples: int = 20_000,
    ) -> None:
        if op not in _OPS:
            raise DetectorError(f"op {op!r} is not one of {', '.join(_OPS)}")
        quantile = _QUANTILE.match(agg)
        if agg not in _PLAIN_AGGS and not quantile:
            raise DetectorError(
                f"agg {agg!r} is not one of {', '.join(_PLAIN_AGGS)} or a quantile like p99"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise DetectorError(f"threshold must be a number, got {threshold!r}")
        if not math.isfinite(threshold):
            raise DetectorError("threshold must be finite")
        if not isinstance(window_s, (int, float)) or window_s < 0:
            raise DetectorError(f"window_s must be a non-negative number of seconds, got {window_s!r}")
        if agg not in ("last",) and window_s == 0:
            raise DetectorError(f"agg {agg!r} needs a window_s > 0")
        if not isinstance(min_count, int) or min_count < 1:
            raise DetectorError(f"min_count must be an integer >= 1, got {min_count!r}")
        if not isinstance(max_samples, int) or max_samples < 1:
            raise DetectorError(f"max_samples must be an integer >= 1, got {max_samples!r}")
        self.op = op
        self.threshold = float(threshold)
        self.agg = agg
        self.window_s = float(window_s)
        self.min_count = min_count
        self.max_samples = max_samples
        self._cmp = _OPS[op]
        self._q = float(quantile.group(1)) / 100.0 if quantile else None
        if self._q is not None and not 0.0 < self._q <= 1.0:
            raise DetectorError(f"quantile {agg!r} must be between p0 and p100")
        self._keep_sorted = self._q is not None or agg in ("max", "min")
        # two parallel deques of floats rather than one of (ts, x) tuples: ~40 % less
        # memory per sample and no tuple to build or unpack on the hot path
        self._ts: deque[float] = deque()
        self._xs: deque[float] = deque()
        self._sorted: list[float] | None = [] if self._keep_sorted else None  # for quantiles, max, min
        self._sum = 0.0
        self._last = math.nan
        self._evidence = MappingProxyType({"threshold": self.threshold, "agg": agg, "window_s": self.window_s})

    def update(self, x: float, ts: float) -> Score:
        # the agent's hottest function: evaluate(ts) and the window bookkeeping inlined,
        # module-level names bound, the verdict tuple built without a Python frame
        self._last = x
        window_s = self.window_s
        if window_s == 0.0:
            return self._compare_last()
        stamps, xs, ordered = self._ts, self._xs, self._sorted
        stamps.append(ts)
        xs.append(x)
        total = self._sum + x
        if ordered is not None:
            _insort(ordered, x)
        if len(stamps) > self.max_samples:
            stamps[0] = -math.inf  # over the bound: the oldest goes now, with the expired
        horizon = ts - window_s
        while stamps[0] <= horizon:
            stamps.popleft()
            old = xs.popleft()
            total -= old
            if ordered is not None:
                del ordered[_bisect_left(ordered, old)]
        self._sum = total
        n = len(stamps)
        q = self._q
        if q is not None:
            k = _ceil(q * n) - 1
            value = ordered[k if k > 0 else 0]  # type: ignore[index]
        elif self.agg == "mean":
            value = total / n
        else:
            value = self._aggregate(n)
        if n >= self.min_count and self._cmp(value, self.threshold):
            return _score(Score, (1.0, True, value, {**self._evidence, "n": n}))
        return _score(Score, (0.0, False, value, _QUIET))

    def evaluate(self, ts: float) -> Score:
        """Score the window as it stands at ``ts`` (expiring what fell out of it).

        Without a window the verdict is the last observation's, whatever ``ts`` is: the
        engine's staleness rule decides when a silent series stops counting.
        """
        if self.window_s == 0.0:
            return self._compare_last()
        stamps = self._ts
        horizon = ts - self.window_s
        while stamps and stamps[0] <= horizon:
            self._drop_oldest()
        n = len(stamps)
        value = self._aggregate(n)
        if n >= self.min_count and self._cmp(value, self.threshold):
            return Score(1.0, True, value, {**self._evidence, "n": n})
        return Score(0.0, False, value, _QUIET)

    def _compare_last(self) -> Score:
        x = self._last
        if not math.isnan(x) and self._cmp(x, self.threshold):
            return Score(1.0, True, x, {"threshold": self.threshold})
        return Score(0.0, False, x, _QUIET)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"op": ">", "threshold": 500.0, "agg": "mean", "window_s": 10.0}

    # --- window bookkeeping -----------------------------------------------------------
    def _drop_oldest(self) -> None:
        self._ts.popleft()
        x = self._xs.popleft()
        self._sum -= x
        if self._sorted is not None:
            del self._sorted[bisect.bisect_left(self._sorted, x)]
        if not self._ts:
            self._sum = 0.0  # no float residue on an empty window

    def _aggregate(self, n: int) -> float:
        agg = self.agg
        if n == 0:
            return 0.0 if agg in ("count", "sum", "rate") else math.nan
        if agg == "mean":
            return self._sum / n
        if self._q is not None:
            return self._sorted[max(0, math.ceil(self._q * n) - 1)]  # type: ignore[index]
        if agg == "count":
            return float(n)
        if agg == "sum":
            return self._sum
        if agg == "rate":
            return self._sum / self.window_s
        if agg == "max":
            return self._sorted[-1]  # type: ignore[index]
        if agg == "min":
            return self._sorted[0]  # type: ignore[index]
        return self._last

    # --- checkpoints ------------------------------------------------------------------
    def _dump(self) -> Any:
        return {"samples": [[t, x] for t, x in zip(self._ts, self._xs, strict=True)], "last": None if math.isnan(self._last) else self._last}

    def _load(self, state: Any) -> None:
        self._ts = deque(float(t) for t, _ in state["samples"])
        self._xs = deque(float(x) for _, x in state["samples"])
        self._sum = math.fsum(self._xs)
        self._sorted = sorted(self._xs) if self._keep_sorted else None
        self._last = math.nan if state["last"] is None else float(state["last"])
