"""Per-bucket aggregation for the latency detector: mean, max, or a quantile estimated in
constant memory by the P-square algorithm (Jain and Chlamtac, CACM 28, 1985)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["aggregate_add", "aggregate_value", "quantile_of"]


def quantile_of(agg: Any) -> float | None:
    if not isinstance(agg, str) or len(agg) < 2 or agg[0] != "p":
        return None
    try:
        q = float(agg[1:]) / 100.0
    except ValueError:
        return None
    return q if 0.0 < q < 1.0 and math.isfinite(q) else None


def aggregate_add(acc: list[float], x: float, n: int, agg: str, q: float | None) -> list[float]:
    """Fold ``x`` (the ``n``-th observation of a bucket) into the bucket's accumulator."""
    if agg == "mean":
        return [acc[0] + x] if acc else [x]
    if agg == "max":
        return [max(acc[0], x)] if acc else [x]
    assert q is not None
    if n <= 5:  # P-square starts from the first five observations, sorted
        acc = sorted([*acc[: n - 1], x])
        return acc if n < 5 else [*acc, 0.0, 1.0, 2.0, 3.0, 4.0]
    heights, pos = acc[:5], acc[5:]
    if x < heights[0]:
        heights[0] = x
    elif x > heights[4]:
        heights[4] = x
    k = 0 if x < heights[1] else 1 if x < heights[2] else 2 if x < heights[3] else 3
    for i in range(k + 1, 5):
        pos[i] += 1.0
    total = n - 1  # the last marker's position
    want = (0.0, total * q / 2.0, total * q, total * (1.0 + q) / 2.0, float(total))
    for i in (1, 2, 3):
        d = want[i] - pos[i]
        if (d >= 1.0 and pos[i + 1] - pos[i] > 1.0) or (d <= -1.0 and pos[i - 1] - pos[i] < -1.0):
            s = 1.0 if d > 0 else -1.0
            h = heights[i] + s / (pos[i + 1] - pos[i - 1]) * (
                (pos[i] - pos[i - 1] + s) * (heights[i + 1] - heights[i]) / (pos[i + 1] - pos[i])
                + (pos[i + 1] - pos[i] - s) * (heights[i] - heights[i - 1]) / (pos[i] - pos[i - 1])
            )
            if not heights[i - 1] < h < heights[i + 1]:
                j = i + int(s)
                h = heights[i] + s * (heights[j] - heights[i]) / (pos[j] - pos[i])
            heights[i] = h
            pos[i] += s
    return heights + pos


def aggregate_value(acc: list[float], n: int, agg: str, q: float | None) -> float:
    if agg == "mean":
        return acc[0] / n
    if agg == "max" or n == 1:
        return acc[0]
    assert q is not None
    if n < 5:
        return acc[max(0, math.ceil(q * n) - 1)]
    return acc[2]
