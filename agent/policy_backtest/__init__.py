"""``watchkeeper backtest --policy``: what a whole policy would have done on recorded history.

Before ``enforce`` is switched on, the question is not "does this detector fire" (that
is ``agent.backtest``) but "what would the agent have *done*": which actions, on which
targets, which guard would have stopped which, how much budget it would have used, how
many pages each incident would have cost, and whether the actions landed on real
incidents. This package answers it by replaying recorded events (a JSONL file, or a
Kafka topic range read without a consumer group) through the agent's own pipeline,
remediator and guards, in event time, against simulated targets (``targets.py``), and
writes a Markdown report and a PNG timeline that are the same bytes on every run.

Modules: ``sources`` (reading), ``targets`` and ``kinds`` (the simulated world),
``replay`` (the decision path), ``labels`` (incidents, precision and recall),
``report`` (Markdown and PNG).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.rules import load_rules

from .labels import load_incidents, parse_time
from .replay import LAST_TS, PolicyRun, PolicySettings, replay
from .report import ReportInputs, write_report
from .sources import Recorded, read_jsonl, read_topic
from .targets import load_targets

__all__ = ["PolicyBacktest", "PolicyRun", "PolicySettings", "run_policy_backtest"]


@dataclass(frozen=True)
class PolicyBacktest:
    """One ``watchkeeper backtest --policy`` invocation."""

    policy: tuple[str, ...]
    out: Path
    events: Path | None = None
    topic: str | None = None
    bootstrap: str | None = None
    start: str | None = None
    end: str | None = None
    labels: Path | None = None
    targets: Path | None = None
    settings: PolicySettings = PolicySettings()
    security: Any = None
    timeout_s: float = 60.0
    max_events: int = 5_000_000


def run_policy_backtest(job: PolicyBacktest) -> tuple[PolicyRun, Path, Path]:
    """Read, replay, report; returns the run and the paths of ``report.md`` and ``timeline.png``."""
    if (job.events is None) == (job.topic is None):
        raise ConfigError("give exactly one of --events FILE and --topic NAME", "--events/--topic")
    start = parse_time(job.start, "--from") if job.start else -math.inf
    end = parse_time(job.end, "--to") if job.end else math.inf
    if end <= start:
        raise ConfigError("--to must be after --from", "--to")
    if (math.isfinite(start) and start < 0) or (math.isfinite(end) and end > LAST_TS):
        raise ConfigError("--from and --to must lie between 1970 and 9999", "--from/--to")
    rules = load_rules(list(job.policy))
    if not any(r.actions for r in rules.rules):
        raise ConfigError("no rule in the policy has actions: nothing to backtest (see `watchkeeper backtest --rules`)", "--policy")
    targets = load_targets(job.targets)
    incidents = load_incidents(job.labels) if job.labels is not None else None
    recorded: list[Recorded]
    if job.events is not None:
        recorded = read_jsonl(job.events, max_bytes=job.settings.max_event_bytes, max_records=job.max_events)
        source = str(job.events)
    else:
        if not job.bootstrap:
            raise ConfigError("--topic needs --bootstrap (or WATCHKEEPER_KAFKA_BOOTSTRAP)", "--bootstrap")
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ConfigError("a topic range needs both --from and --to", "--from/--to")
        assert job.topic is not None
        recorded = asyncio.run(
            read_topic(job.bootstrap, job.topic, start, end, security=job.security, timeout_s=job.timeout_s, max_records=job.max_events)
        )
        source = f"topic {job.topic} ({len(recorded)} records)"
    run = asyncio.run(replay(rules, recorded, targets, job.settings, start=start, end=end))
    inputs = ReportInputs(
        source=source,
        rules=tuple(job.policy),
        settings=job.settings,
        incidents=incidents,
        targets_file=str(job.targets) if job.targets else None,
    )
    md, png = write_report(run, inputs, job.out)
    return run, md, png
