"""The signal a fault disturbs, bucketed over scenario time, for the report's plot.

>>> s = SignalSeries("inference", "status", "error_ratio", where={}, bucket_s=10)
>>> for t, status in [(1, "ok"), (2, "error"), (11, "ok")]:
...     s.add(t, {"type": "inference", "status": status})
>>> s.points()
[(5.0, 0.5), (15.0, 0.0)]
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

__all__ = ["SignalSeries"]


def _field(event: dict[str, Any], name: str) -> Any:
    if name.startswith("features."):
        return (event.get("features") or {}).get(name.removeprefix("features."))
    if name == "total_tokens":
        return (event.get("prompt_tokens") or 0) + (event.get("completion_tokens") or 0)
    if name == "mem_used_ratio":
        return event["mem_used_bytes"] / event["mem_total_bytes"]
    if name == "flagged":
        return float(bool((event.get("safety") or {}).get("flagged")))
    if name == "empty":
        return 1.0 if event.get("hits") == 0 else 0.0
    return event.get(name)


class SignalSeries:
    """Observations of ``field`` in events of ``source`` matching ``where``, per ``bucket_s``.

    ``agg``: ``p99``, ``mean``, ``max``, ``sum``, ``error_ratio`` (share of ``status ==
    error``) or ``share`` (the field is ``name=value``: share of events with that value).
    """

    def __init__(self, source: str, field: str, agg: str, where: dict[str, str], bucket_s: float) -> None:
        self.source, self.agg, self.where, self.bucket_s = source, agg, where, bucket_s
        self.field, _, self.value = field.partition("=")
        self.label = f"{agg}({field})"
        self._buckets: dict[int, list[float]] = defaultdict(list)

    def add(self, offset_s: float, event: dict[str, Any]) -> None:
        if event.get("type") != self.source:
            return
        if any(str(event.get(k, (event.get("labels") or {}).get(k))) != v for k, v in self.where.items()):
            return
        x = _field(event, self.field)
        if self.agg == "error_ratio":
            x = 1.0 if event.get("status") == "error" else 0.0
        elif self.agg == "share":
            x = 1.0 if str(x) == self.value else 0.0
        if isinstance(x, (int, float)) and math.isfinite(x):
            self._buckets[int(offset_s // self.bucket_s)].append(float(x))

    def points(self) -> list[tuple[float, float]]:
        out = []
        for i in sorted(self._buckets):
            xs = self._buckets[i]
            if self.agg == "p99":
                xs = sorted(xs)
                v = xs[min(len(xs) - 1, int(math.ceil(0.99 * len(xs))) - 1)]
            elif self.agg == "max":
                v = max(xs)
            elif self.agg == "sum":
                v = sum(xs)
            else:
                v = sum(xs) / len(xs)
            out.append(((i + 0.5) * self.bucket_s, v))
        return out
