"""Real LLM traffic: the Azure LLM inference trace 2023 (TIMESTAMP, ContextTokens, GeneratedTokens).

The trace carries request times and token counts but no tenants; the fleet assigns
tenants by weight, so a token storm can multiply one tenant's share of real traffic.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from agent.errors import WatchkeeperError

__all__ = ["TraceMissing", "load_trace"]


class TraceMissing(WatchkeeperError):
    """The trace file is not there (the scenario is skipped, with this reason)."""


def _epoch(text: str) -> float:
    # "2023-11-16 18:15:46.6805900": seven fractional digits, more than fromisoformat takes on 3.10
    head, _, frac = text.strip().partition(".")
    return datetime.fromisoformat(head).timestamp() + (float(f"0.{frac}") if frac else 0.0)


def load_trace(path: Path, speedup: float, duration_s: float) -> Iterator[tuple[float, int, int]]:
    """``(offset_s, prompt_tokens, completion_tokens)`` for the first ``duration_s`` scenario seconds.

    ``speedup`` trace seconds pass per scenario second (2: twice the trace's rate).
    """
    if not path.is_file():
        raise TraceMissing(f"LLM trace {path} not found (the Azure LLM inference trace 2023; pass --llm-trace)")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        first: float | None = None
        for row in reader:
            try:
                ts = _epoch(row["TIMESTAMP"])
                prompt, completion = int(row["ContextTokens"]), int(row["GeneratedTokens"])
            except (KeyError, ValueError, TypeError):
                continue  # a torn or foreign line: the rest of the trace is still good
            first = ts if first is None else first
            offset = (ts - first) / speedup
            if offset >= duration_s:
                return
            yield offset, prompt, completion
