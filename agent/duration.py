"""Prometheus-style durations (``90s``, ``5m``, ``1h30m``) to seconds, and back.

Rules and settings accept either a duration string or a plain number of seconds, so
an SRE can write ``for: 5m`` as in a Prometheus rule file.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(value: object) -> float:
    """Seconds from ``"1h30m"`` or a number; ``ValueError`` says what a duration looks like."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 5m, 1h30m)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 5m, 1h30m)")
    else:
        raise ValueError(f"{value!r} is not a duration (write e.g. 30s, 5m, 1h30m)")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} must be a finite, non-negative duration")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus-style spelling, for messages and annotations."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds else "0s"
    out, rest = [], seconds
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if rest >= size:
            count = int(rest // size)
            out.append(f"{count}{unit}")
            rest -= count * size
    if rest or not out:
        out.append(f"{rest:g}s")
    return "".join(out)
