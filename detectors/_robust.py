"""Robust statistics for the GPU detector: the median of a sorted list and the Theil-Sen
slope (Sen, JASA 63, 1968), which a lone spike or a single step cannot tilt."""

from __future__ import annotations

import math

__all__ = ["median", "theil_sen"]


def theil_sen(points: list[tuple[float, float]]) -> float:
    """Median of the pairwise slopes of (t, x) points with distinct times."""
    slopes = sorted((x2 - x1) / (t2 - t1) for i, (t1, x1) in enumerate(points) for t2, x2 in points[i + 1 :] if t2 > t1)
    return median(slopes) if slopes else math.nan


def median(values: list[float]) -> float:
    """Median of an already sorted list."""
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2.0
