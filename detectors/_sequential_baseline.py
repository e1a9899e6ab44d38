"""The learned baseline of the sequential detector: an exponentially decayed log-histogram
of the values (tail model) or decayed error counts (indicator model), read as the ratio
``p0`` of events over the limit and a conservative upper bound on it.

Decay is forward decay (Cormode, Shkapenyuk, Srivastava, Xu, ICDE 2009): an event at
``ts`` weighs ``2 ** ((ts - ref) / half_life_s)``, so older events fade with the given
half-life without touching every bucket on every event; the weights are rescaled when
the exponent grows large.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Baseline", "wilson_upper"]

_GAMMA = 1.05  # bucket edges grow by 5 %: the limit and the median are exact to 5 %
_LOG_GAMMA = math.log(_GAMMA)
_LOWEST, _HIGHEST = -400, 600  # buckets 1.05**-400 (~3e-9) .. 1.05**600 (~5e12), extremes clamped
_RESCALE_AT = 60.0  # exponent (half-lives past ``ref``) at which weights are rescaled
_Z = 3.0  # the ratio used is the Wilson upper bound at z = 3: a young baseline is not trusted


def bucket_of(x: float) -> int:
    """The log bucket of ``x``: ``x`` lies in ``(GAMMA**(i-1), GAMMA**i]``; x <= 0 in the lowest."""
    if x <= 0.0:
        return _LOWEST
    return min(_HIGHEST, max(_LOWEST, math.ceil(math.log(x) / _LOG_GAMMA)))


def edge(i: int) -> float:
    """The upper edge of bucket ``i``."""
    return _GAMMA**i


def wilson_upper(p: float, n: float) -> float:
    """Upper end of Wilson's score interval (z = 3) for a ratio ``p`` seen in ``n`` events."""
    if n <= 0.0:
        return 1.0
    z2 = _Z * _Z
    centre = p + z2 / (2 * n)
    spread = _Z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))


class Baseline:
    """Decayed weights of past events: per log bucket (tail model) or errors (indicator)."""

    __slots__ = ("half_life_s", "tail", "ref", "total", "squares", "hits", "buckets", "count")

    def __init__(self, half_life_s: float, tail: bool) -> None:
        self.half_life_s = half_life_s
        self.tail = tail
        self.ref: float | None = None  # the time weights are relative to
        self.total = 0.0  # sum of weights
        self.squares = 0.0  # sum of squared weights: the effective count is total**2 / squares
        self.hits = 0.0  # indicator model: the weight of the errors
        self.buckets: dict[int, float] = {}  # tail model: bucket -> weight
        self.count = 0  # events learned, undecayed (for the cold start)

    def add(self, x: float, ts: float) -> None:
        if self.ref is None:
            self.ref = ts
        exponent = (ts - self.ref) / self.half_life_s
        if exponent > _RESCALE_AT:
            self._rescale(ts)
            exponent = 0.0
        w = 2.0**exponent
        self.total += w
        self.squares += w * w
        self.count += 1
        if self.tail:
            i = bucket_of(x)
            self.buckets[i] = self.buckets.get(i, 0.0) + w
        elif x >= 0.5:
            self.hits += w

    def _rescale(self, ts: float) -> None:
        f = 2.0 ** (-(ts - self.ref) / self.half_life_s)  # type: ignore[operator]
        self.ref = ts
        self.total *= f
        self.squares *= f * f
        self.hits *= f
        floor = self.total * 1e-12  # buckets that faded to nothing are dropped
        self.buckets = {i: w * f for i, w in self.buckets.items() if w * f > floor}

    def effective_n(self) -> float:
        return self.total * self.total / self.squares if self.squares > 0.0 else 0.0

    def read(self, quantile: float) -> tuple[int, float, float]:
        """(limit bucket, ratio over the limit, median): the tail model's reading.

        The limit is the smallest bucket edge with at most ``1 - quantile`` of the weight
        above it; the ratio is that weight's exact share (at most ``1 - quantile``).
        """
        allowed = (1.0 - quantile) * self.total
        above = 0.0
        limit = _HIGHEST
        for i in sorted(self.buckets, reverse=True):
            w = self.buckets[i]
            if above + w > allowed:
                limit = i
                break
            above += w
        half, seen, median = self.total / 2.0, 0.0, _LOWEST
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen >= half:
                median = i
                break
        return limit, above / self.total if self.total > 0 else 0.0, edge(median) / math.sqrt(_GAMMA)

    def dump(self) -> list[Any]:
        return [self.ref, self.total, self.squares, self.hits, sorted(self.buckets.items()), self.count]

    def load(self, data: list[Any]) -> None:
        self.ref, self.total, self.squares, self.hits, buckets, self.count = data
        self.buckets = {int(i): float(w) for i, w in buckets}
