"""Labelled incidents and how a policy's actions score against them.

A labels file says when something really was wrong (and optionally where): CSV with a
``start,end[,service]`` header, or JSON (a list of ``{"start", "end", "service"}``).
Times are epoch seconds or ISO 8601 (naive means UTC).

Definitions (also in ``docs/policy-backtest.md``):

- an *action* is a decision that would have changed a target: outcome ``executed``
  (or ``dry-run`` when the ceiling kept it from acting) of a kind other than ``notify``
  (a message, not a remediation); refusals, no-ops, requests waiting for approval,
  failures, verification outcomes and undos (``undo_of``) are not actions;
- an action is *right* when its event time lies in a labelled incident
  (``start <= t <= end``) and, if the incident names a service, the action's alert
  carries that ``service`` label or its target names it;
- precision = right actions / actions; recall = incidents with at least one right
  action / incidents. Either is undefined (shown as ``-``) when its denominator is 0;
- a *page* is an alert incident that fired (one per fingerprint and ``active_at``,
  however often re-sent); pages per incident counts those that fired inside it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actions.audit import AuditRecord
from agent.errors import ConfigError
from agent.model import Alert, AlertState

__all__ = ["ACTING", "MESSAGES", "Incident", "Score", "load_incidents", "pages", "score_actions"]

ACTING = frozenset({"executed", "dry-run"})
"""Outcomes that count as an action (see the module docstring)."""

MESSAGES = frozenset({"notify"})
"""Kinds that send a message and change no target: listed in the report, not scored as actions."""


@dataclass(frozen=True, slots=True)
class Incident:
    start: float
    end: float
    service: str = ""

    def covers(self, ts: float) -> bool:
        return self.start <= ts <= self.end

    def about(self, labels: dict[str, str] | Any, target: str) -> bool:
        if not self.service:
            return True
        return labels.get("service") == self.service or self.service in target.split("/")


@dataclass(frozen=True)
class Score:
    actions: int
    right: int
    incidents: int
    remediated: int

    @property
    def precision(self) -> float | None:
        return self.right / self.actions if self.actions else None

    @property
    def recall(self) -> float | None:
        return self.remediated / self.incidents if self.incidents else None


def parse_time(text: Any, where: str) -> float:
    """Epoch seconds or ISO 8601 (naive: UTC)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"not a time: {value!r}", where) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def load_incidents(path: Path) -> list[Incident]:
    """Incidents from a CSV or JSON labels file, sorted by start."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the labels file: {exc}", str(path)) from None
    rows: list[tuple[str, Any]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not JSON: {exc}", str(path)) from None
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise ConfigError("expected a list of {start, end[, service]} objects", str(path))
        rows = [(f"{path}[{i}]", d) for i, d in enumerate(data)]
    else:
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or not {"start", "end"} <= {f.strip() for f in reader.fieldnames}:
            raise ConfigError("expected a header row with start,end[,service]", str(path))
        rows = [(f"{path}:{i}", {k.strip(): v for k, v in row.items() if k}) for i, row in enumerate(reader, start=2)]
    out = []
    for where, row in rows:
        if "start" not in row or "end" not in row:
            raise ConfigError("an incident needs start and end", where)
        start, end = parse_time(row["start"], where), parse_time(row["end"], where)
        if end < start:
            raise ConfigError(f"end {row['end']!r} is before start {row['start']!r}", where)
        out.append(Incident(start, end, str(row.get("service") or "").strip()))
    return sorted(out, key=lambda i: (i.start, i.end, i.service))


def score_actions(records: Sequence[AuditRecord], incidents: Sequence[Incident]) -> Score:
    """Precision and recall of the actions against the labelled incidents."""
    acted = [
        r for r in records
        if r.outcome in ACTING and r.action not in MESSAGES and getattr(r, "undo_of", None) is None  # an undo corrects, it is not scored
    ]
    right = sum(1 for r in acted if any(i.covers(r.ts) and i.about(r.labels, r.target) for i in incidents))
    remediated = sum(1 for i in incidents if any(i.covers(r.ts) and i.about(r.labels, r.target) for r in acted))
    return Score(len(acted), right, len(incidents), remediated)


def pages(transitions: Sequence[Alert]) -> list[Alert]:
    """One FIRING transition per alert incident (fingerprint, active_at), in firing order."""
    seen: set[tuple[str, float]] = set()
    out = []
    for alert in transitions:
        key = (alert.fingerprint, alert.active_at)
        if alert.state is AlertState.FIRING and key not in seen:
            seen.add(key)
            out.append(alert)
    return out
