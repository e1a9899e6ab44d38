"""``watchkeeper backtest``: a rule's detector over a recorded series, as fast as it runs.

How an SRE tries a rule on last week's data before enabling it, and how detection
quality is measured. Input is a CSV of ``timestamp,value`` (one series) or JSONL events
of the wire contract (every series the rule keys). The rule's ``for`` and
``keep_firing_for`` apply exactly as in the agent, in event time. Output: one row per
observation (timestamp, series, value, score, active, alert state) and the alerts that
would have fired.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from agent.errors import ConfigError, DetectorError, Location
from agent.model import EVENT_ADAPTER, Alert, AlertState, Finding
from agent.rules import Rule
from agent.rules.template import compile_template
from agent.runtime.alerts import AlertLifecycle
from detectors.base import Detector
from detectors.registry import DETECTORS

__all__ = ["BacktestResult", "backtest", "read_series", "rule_for_kind"]


@dataclass
class BacktestResult:
    """Counts and the alerts that would have fired, in event time."""

    rows: int = 0
    skipped: int = 0
    alerts: list[Alert] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        fired = [a for a in self.alerts if a.state is AlertState.FIRING]
        return {
            "rows": self.rows,
            "skipped": self.skipped,
            "alerts_fired": len(fired),
            "alerts": [
                {"state": a.state.value, "labels": dict(a.labels), "active_at": a.active_at, "fired_at": a.fired_at, "resolved_at": a.resolved_at}
                for a in self.alerts
            ],
        }


def rule_for_kind(kind: str, params: dict[str, Any], *, for_s: float = 0.0, keep_firing_for_s: float = 0.0) -> Rule:
    """A one-off rule around a detector kind, for backtesting parameters without a file."""
    if kind not in DETECTORS:
        raise ConfigError(f"unknown detector {kind!r} (known: {', '.join(sorted(DETECTORS))})", "--kind")
    cls = DETECTORS[kind]
    try:
        cls(**params)
    except (DetectorError, TypeError) as exc:
        raise ConfigError(f"detector {kind!r}: {exc}", "--param") from None
    return Rule(
        id=f"backtest/{kind}",
        group="backtest",
        name=f"Backtest_{kind}",
        source="series",
        selector="{}",
        by=("series",),
        field="value",
        equals=None,
        detector_class=cls,
        detector_params=params,
        for_s=for_s,
        keep_firing_for_s=keep_firing_for_s,
        labels={},
        annotations={"summary": compile_template("{{ $labels.series }} {{ $value }}")},
        actions=(),
        location=Location("<command line>"),
        _by_labels=("series",),
    )


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # NAB and most exports write naive UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def read_series(path: Path, name: str = "") -> Iterator[tuple[float, tuple[str, ...], Any]]:
    """(ts, series key, value) from a ``timestamp,value`` CSV (a header row is optional)."""
    series = (name or path.stem,)
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or (lineno == 1 and row[0].strip().lower() in ("timestamp", "ts", "time")):
                continue
            if len(row) < 2:
                raise ConfigError(f"expected timestamp,value, got {row!r}", f"{path}:{lineno}")
            try:
                ts = _parse_time(row[0])
                value: Any = float(row[1])
            except ValueError:
                raise ConfigError(f"cannot read timestamp,value from {row!r}", f"{path}:{lineno}") from None
            yield ts, series, value


def _read_events(path: Path, rule: Rule, result: BacktestResult) -> Iterator[tuple[float, tuple[str, ...], Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                event = EVENT_ADAPTER.validate_json(line)
            except ValidationError:
                result.skipped += 1
                continue
            if event.type != rule.source or not rule.matches(event):
                continue
            x = rule.observe(event)
            if x is None:
                result.skipped += 1
                continue
            yield event.ts, rule.series(event), x


def backtest(rule: Rule, rows: Iterable[tuple[float, tuple[str, ...], Any]], out: TextIO | None = None) -> BacktestResult:
    """Run ``rule`` over ``rows``; write per-row verdicts to ``out`` (CSV) if given."""
    result = BacktestResult()
    detectors: dict[tuple[str, ...], Detector] = {}
    clocks: dict[tuple[str, ...], float] = {}
    lifecycle = AlertLifecycle()
    rules = {rule.id: rule}
    writer = csv.writer(out) if out is not None else None
    if writer is not None:
        writer.writerow(["timestamp", "series", "value", "score", "active", "alert_state"])
    for ts, key, x in rows:
        detector = detectors.get(key)
        if detector is None:
            detector = detectors[key] = rule.new_detector()
        ts = max(ts, clocks.get(key, ts))
        clocks[key] = ts
        score = detector.update(x, ts)
        result.rows += 1
        result.alerts.extend(lifecycle.advance(rules, [Finding(rule.id, key, ts, score)]))
        if writer is not None:
            tracked = lifecycle.active.get((rule.id, key))
            state = tracked.state.value if tracked is not None else "inactive"
            writer.writerow([_fmt(ts), "/".join(key), _fmt(score.value), f"{score.score:.6g}", int(score.active), state])
    return result


def backtest_file(rule: Rule, path: Path, out: TextIO | None = None) -> BacktestResult:
    """CSV (``timestamp,value``) or JSONL events, chosen by the file's suffix."""
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        if rule.source == "series":
            raise ConfigError("JSONL events need a rule from a rules file (--rules and --alert)", str(path))
        result = BacktestResult()
        done = backtest(rule, _read_events(path, rule, result), out)
        done.skipped += result.skipped
        return done
    csv_rule = replace(rule, by=("series",), _by_labels=("series",)) if rule.source != "series" else rule
    return backtest(csv_rule, read_series(path), out)


def _fmt(x: float) -> str:
    return "" if isinstance(x, float) and math.isnan(x) else (f"{x:.6f}".rstrip("0").rstrip(".") if isinstance(x, float) else str(x))


def summary_json(result: BacktestResult) -> str:
    return json.dumps(result.summary(), indent=2)
