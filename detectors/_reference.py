"""The named reference window of the drift detectors: ``[start, end)`` in event time.

A drift rule may name the period the model was validated on (``reference_window:
[2026-11-02T00:00:00Z, 2026-11-09T00:00:00Z]``): events before it are not learned,
events in it become the reference, and the first event at or after its end completes
it. A window that passed before the series began cannot be learned from events; the
detector then learns its first ``reference_size`` events instead and says so in its
evidence (``reference_source``), and a reference file is the better tool.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from agent.errors import DetectorError

__all__ = ["MIN_REFERENCE", "parse_window", "source_label"]

MIN_REFERENCE = 10  # values a reference needs, whatever its origin


def parse_window(window: Any) -> tuple[float, float] | None:
    """``None`` or ``(start, end)`` epoch seconds from two times: epoch seconds, RFC 3339
    text or datetimes (YAML reads unquoted timestamps as datetimes; naive ones are UTC).

    >>> parse_window(["2026-11-02T00:00:00Z", 1794700800])
    (1793577600.0, 1794700800.0)
    """
    if window is None:
        return None
    hint = "write [start, end] as RFC 3339 times or epoch seconds, e.g. [2026-11-02T00:00:00Z, 2026-11-09T00:00:00Z]"
    if isinstance(window, (str, bytes)) or not isinstance(window, (tuple, list)) or len(window) != 2:
        raise DetectorError(f"reference_window must be two times: {hint}; got {window!r}")
    start, end = (_epoch(t, hint) for t in window)
    if not start < end:
        raise DetectorError(f"reference_window must start before it ends, got [{_iso(start)}, {_iso(end)}]")
    return start, end


def _epoch(t: Any, hint: str) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        if math.isfinite(t):
            return float(t)
    elif isinstance(t, str):
        try:
            return _epoch(datetime.fromisoformat(t.strip()), hint)
        except ValueError:
            pass
    raise DetectorError(f"reference_window: {t!r} is not a time: {hint}")


def source_label(fixed: bool, window: tuple[float, float] | None, from_window: bool, size: int) -> str:
    """Where a detector's reference came from, in words for the evidence."""
    if fixed:
        return "fixed (reference or reference_file)"
    if from_window:
        assert window is not None
        return f"window {_iso(window[0])} to {_iso(window[1])}"
    if window is not None:
        return f"first {size} events (the reference window had passed)"
    return f"first {size} events"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")
