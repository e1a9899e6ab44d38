"""The drift detector's statistics: a reference as knots and cell counts (rank-normal
scores), and CUSUM thresholds under a false-alarm budget (Siegmund, Lorden, Lundberg)."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Any

import numpy as np

from agent.errors import DetectorError

__all__ = ["KNOTS", "finite", "knots_and_counts", "sensitivities", "solve", "weighted_reference"]

KNOTS = 256  # the reference is kept as 256 knots plus the counts of the cells around them


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def weighted_reference(reference: Any) -> list[tuple[float, int]]:
    """Reference entries as (value, count): plain numbers count once."""
    if not isinstance(reference, (tuple, list)):
        raise DetectorError("reference must be a list of numbers or of [value, count] pairs")
    out = []
    for item in reference:
        if finite(item):
            out.append((float(item), 1))
        elif (isinstance(item, (tuple, list)) and len(item) == 2 and finite(item[0])
              and isinstance(item[1], int) and not isinstance(item[1], bool) and item[1] >= 1):
            out.append((float(item[0]), item[1]))
        else:
            raise DetectorError(f"reference entries must be finite numbers or [value, count >= 1] pairs, got {item!r}")
    return out


def knots_and_counts(weighted: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    """Weighted values as at most 256 knots (at evenly spaced ranks) and cell counts."""
    totals: dict[float, int] = {}
    for v, c in weighted:
        totals[v] = totals.get(v, 0) + c
    distinct = sorted(totals)
    if len(distinct) <= KNOTS:
        knots = distinct
    else:
        ranks = np.cumsum([totals[v] for v in distinct])
        picks = np.searchsorted(ranks, np.linspace(1, ranks[-1], KNOTS))
        knots = sorted({distinct[int(i)] for i in picks})
    counts = [0] * (2 * len(knots) + 1)
    for v in distinct:
        counts[bisect_left(knots, v) + bisect_right(knots, v)] += totals[v]
    return knots, counts


def solve(u0: float, a: float) -> float:
    """Smallest u with u - a u^2 = u0 (inf when there is none: the test is skipped)."""
    disc = 1.0 - 4.0 * a * u0
    if disc <= 0.0:
        return math.inf
    return 2.0 * u0 / (1.0 + math.sqrt(disc))


def _lundberg(llr: np.ndarray, w: np.ndarray) -> float:
    """theta in (0, 1] with sum(w * exp(theta * llr)) = 1 (1 when the llr is light-tailed enough)."""
    if float(w @ np.exp(llr)) <= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if float(w @ np.exp(mid * llr)) > 1.0:
            hi = mid
        else:
            lo = mid
    return max(lo, 1e-3)


def sensitivities(tests: tuple, z: np.ndarray, w: np.ndarray, n: int) -> list[tuple[float, float]]:
    """Per CUSUM: the Lundberg exponent theta of its llr on the reference scores, and the
    ``a`` of the reference-error correction ``u - a u^2``.

    A reference of ``n`` values knows its mean to ``e ~ 1/sqrt(n)`` sd and its variance to
    ``e ~ sqrt((kurtosis - 1) / n)``. The alarm rate ``exp(-theta h)`` then has
    ``theta = 1 - k e`` (``k = 2 / d`` for a mean shift ``d``, ``|c s^2 / (c s^2 - ln s)|``
    for a spread ratio ``s`` with ``c = (1 - 1/s^2) / 2``), and averaged over the error it
    is ``exp(-u + a u^2)`` with ``u = theta h`` and ``a = k^2 var(e) / 2``.
    """
    kurt = float(w @ z**4)
    out = []
    for name, d, a, b, c in tests:
        theta = _lundberg(a * z + b * z * z + c, w)
        if name.startswith("mean"):
            k, var = 2.0 / d, 1.0 / n
        else:
            k, var = abs(b * d * d / (b * d * d + c)), max(kurt - 1.0, 2.0) / n
        out.append((theta, k * k * var / 2 / (theta * theta)))
    return out
