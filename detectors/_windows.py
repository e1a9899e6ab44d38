"""Sliding event-time windows in fixed buckets, and duration parameters, shared by the
rate detectors (``error_rate``, ``token_spend``)."""

from __future__ import annotations

import math
from typing import Any

from agent.duration import parse_duration
from agent.errors import DetectorError

__all__ = ["BUCKETS", "BucketWindow", "durations", "is_number", "seconds"]

BUCKETS = 30  # buckets per window: its edge is exact to 1/30 of its length


class BucketWindow:
    """Sum and count of one sliding event-time window, in ``BUCKETS`` + 1 buckets.

    The buckets are ``window_s / BUCKETS`` wide. The window (ts - window_s, ts] holds
    the newest ``BUCKETS`` buckets whole and the part of the oldest one still inside it,
    pro rata (arrivals are taken as uniform within a bucket), so state is fixed whatever
    the traffic and the edge moves smoothly. ``error_rate`` sums error indicators
    (``sums``: errors, ``counts``: requests); ``token_spend`` sums amounts.
    """

    __slots__ = ("width_s", "size", "sums", "counts", "total", "count", "index")

    def __init__(self, window_s: float) -> None:
        self.width_s = window_s / BUCKETS
        self.size = BUCKETS + 1
        self.sums = [0.0] * self.size
        self.counts = [0] * self.size
        self.total = 0.0
        self.count = 0
        self.index = -(2**62)  # the current bucket's number; "minus infinity" before data

    def advance(self, index: int, evicted: list[tuple[float, int]] | None = None) -> int:
        """Move the newest bucket to ``index``, emptying the buckets that leave (appended
        to ``evicted``, oldest first, when given); returns the number of buckets moved."""
        steps = index - self.index
        size = self.size
        sums, counts = self.sums, self.counts
        first = self.index + 1 if steps < size else self.index + 1 - size
        for j in range(first, first + min(steps, size)):
            i = j % size
            if evicted is not None:
                evicted.append((sums[i], counts[i]))
            self.count -= counts[i]
            sums[i] = 0.0
            counts[i] = 0
        self.total = sum(sums)  # re-summed, so float residue never builds up
        self.index = index
        return steps

    def add(self, x: float) -> None:
        i = self.index % self.size
        self.sums[i] += x
        self.counts[i] += 1
        self.total += x
        self.count += 1

    def window(self, ts: float) -> tuple[float, float]:
        """(sum, count) of the window ending at ``ts``."""
        frac = ts / self.width_s - self.index
        oldest = (self.index + 1) % self.size
        return self.total - frac * self.sums[oldest], self.count - frac * self.counts[oldest]

    def dump(self) -> list[Any]:
        return [self.index, self.sums, self.counts, self.total, self.count]

    def load(self, data: list[Any]) -> None:
        self.index = int(data[0])
        self.sums = [float(v) for v in data[1]]
        self.counts = [int(v) for v in data[2]]
        self.total, self.count = float(data[3]), int(data[4])


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def seconds(name: str, v: Any) -> float:
    """A positive duration parameter (seconds, or text such as ``"5m"``)."""
    try:
        value = parse_duration(v)
    except ValueError as exc:
        raise DetectorError(f"{name}: {exc}") from None
    if value <= 0:
        raise DetectorError(f"{name} must be longer than 0s, got {v!r}")
    return value


def durations(name: str, values: Any) -> tuple[float, ...]:
    """A non-empty list of positive durations."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)) or not values:
        raise DetectorError(f"{name} must be a non-empty list of durations, got {values!r}")
    return tuple(seconds(name, v) for v in values)
