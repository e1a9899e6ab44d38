"""A forged event time cannot satisfy ``for``: event time is trusted only near the record's timestamp.

Before issue 12, sixty records produced in one instant with ``ts`` spread over a minute
fired a ``for: 30s`` rule at once (the first test below failed). Honest records, whose
``ts`` is their record's timestamp, keep exact ``for`` semantics; replays of history
(rule tests, backtests) never go through this check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, KafkaConfig
from agent.errors import ConfigError
from agent.model import AlertState
from agent.runtime.app import AgentApp
from agent.runtime.notifier import TerminalSink
from agent.runtime.selfmetrics import SelfMetrics

WALL = 1_800_000_000.0  # the record timestamps: when the producer sent the records
RULE = """\
groups:
- name: g
  rules:
  - alert: SlowFor30s
    source: inference
    by: [service]
    detector: {kind: threshold, field: latency_ms, op: '>', threshold: 100}
    for: 30s
"""


@dataclass
class Rec:
    value: bytes
    timestamp: int
    offset: int = 0
    topic: str = "watchkeeper.inference"
    partition: int = 0
    key: bytes | None = b"svc"


def slow(ts: float) -> bytes:
    return json.dumps({"type": "inference", "ts": ts, "service": "svc", "model": "m", "model_version": "1",
                       "latency_ms": 900.0, "status": "ok"}).encode()


def agent(tmp_path: Path, **settings: Any) -> AgentApp:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    config = AgentConfig(kafka=KafkaConfig("localhost:9092"), rules=(str(rules),), http_addr="127.0.0.1:0", **settings)
    app = AgentApp(config, TerminalSink(), serve_http=False, metrics=SelfMetrics())
    app.processor.clock = _Wall()
    return app


class _Wall:
    """The agent's wall clock: just after the records were sent."""

    def __call__(self) -> float:
        return WALL + 1.0


def burst() -> list[Rec]:
    """Sixty records sent at one instant, their ``ts`` forged to span the minute before it."""
    return [Rec(slow(WALL - 60 + i), timestamp=int(WALL * 1000), offset=i) for i in range(61)]


def test_a_burst_with_forged_event_times_does_not_fire_a_for_rule(tmp_path: Path) -> None:
    app = agent(tmp_path)  # the default bound
    out = app.processor.process(burst())
    assert [a.state for a in out.transitions if a.state is AlertState.FIRING] == []
    assert app.pipeline.firing() == []
    skewed = [dl for dl in out.dead_letters if dl.kind == "skew"]
    assert len(skewed) == 61 - 11  # the last ten seconds are within the bound, trusted
    assert all("max_event_skew_s=10" in dl.reason for dl in skewed)
    assert out.processed + len(out.dead_letters) == 61
    sample = app.metrics.registry.get_sample_value
    assert sample("watchkeeper_dead_letters_total", {"topic": "watchkeeper.inference", "reason": "skew"}) == 50


def test_forged_future_event_times_are_refused_too(tmp_path: Path) -> None:
    app = agent(tmp_path)
    out = app.processor.process([Rec(slow(WALL + 11), timestamp=int(WALL * 1000))])
    assert [dl.kind for dl in out.dead_letters] == ["skew"]


def test_a_record_without_a_timestamp_cannot_vouch_for_its_event_time(tmp_path: Path) -> None:
    app = agent(tmp_path)
    out = app.processor.process([Rec(slow(WALL), timestamp=-1)])
    [dl] = out.dead_letters
    assert dl.kind == "skew" and "no Kafka timestamp" in dl.reason


def test_honest_records_keep_exact_for_semantics(tmp_path: Path) -> None:
    """One record per second, ``ts`` a little behind its record's timestamp: fires when 30 s have passed."""
    app = agent(tmp_path)
    fired = []
    for i in range(40):
        out = app.processor.process([Rec(slow(WALL + i - 0.25), timestamp=int((WALL + i) * 1000), offset=i)])
        assert not out.dead_letters
        fired += [(i, a.fired_at, a.active_at) for a in out.transitions if a.state is AlertState.FIRING]
    assert fired == [(30, WALL + 30 - 0.25, WALL - 0.25)]


def test_zero_trusts_event_time_as_sent_for_replays_of_history(tmp_path: Path) -> None:
    app = agent(tmp_path, max_event_skew_s=0.0)
    out = app.processor.process(burst())
    assert not out.dead_letters
    assert [a.fired_at for a in out.transitions if a.state is AlertState.FIRING] == [WALL - 30]


def test_the_bound_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WATCHKEEPER_MAX_EVENT_SKEW_S"):
        agent(tmp_path, max_event_skew_s=-1.0)
    with pytest.raises(ConfigError, match="WATCHKEEPER_MAX_EVENT_SKEW_S"):
        agent(tmp_path, max_event_skew_s=float("nan"))


# --- the record timestamp is the producer's word too (CreateTime): arrival marks ----------
def forged_burst(first_offset: int) -> list[Rec]:
    """The burst again, each record's Kafka timestamp forged to match its ``ts``."""
    return [Rec(slow(WALL - 60 + i), timestamp=int((WALL - 60 + i) * 1000), offset=first_offset + i) for i in range(61)]


def test_a_burst_with_forged_record_timestamps_is_caught_by_the_arrival_marks(tmp_path: Path) -> None:
    app = agent(tmp_path)
    assert app.processor.arrivals is not None
    # a second before the burst, this agent fetched the partition: it ended at offset 100
    app.processor.arrivals.note(("watchkeeper.inference", 0), 100, int((WALL - 1) * 1000))
    out = app.processor.process(forged_burst(100))
    assert app.pipeline.firing() == []
    skewed = [dl for dl in out.dead_letters if dl.kind == "skew"]
    assert len(skewed) == 49  # stamped more than 10 s before WALL - 1, when the partition was seen without them
    assert "before this agent saw watchkeeper.inference/0 end without it" in skewed[0].reason


def test_a_backlog_below_every_mark_is_not_constrained(tmp_path: Path) -> None:
    """Catch-up: records already in the log when the agent looked are judged by their timestamps only."""
    app = agent(tmp_path)
    assert app.processor.arrivals is not None
    app.processor.arrivals.note(("watchkeeper.inference", 0), 1000, int((WALL - 1) * 1000))
    out = app.processor.process(forged_burst(100))
    assert not out.dead_letters
    assert [a.fired_at for a in out.transitions if a.state is AlertState.FIRING] == [WALL - 30]


def test_honest_live_records_pass_the_arrival_marks(tmp_path: Path) -> None:
    app = agent(tmp_path)
    marks = app.processor.arrivals
    assert marks is not None
    for i in range(40):
        marks.note(("watchkeeper.inference", 0), i, int((WALL + i - 0.5) * 1000))  # fetched half a second before
        out = app.processor.process([Rec(slow(WALL + i - 0.25), timestamp=int((WALL + i) * 1000), offset=i)])
        assert not out.dead_letters, out.dead_letters


def test_arrival_marks_keep_the_tightest_bound_and_forget_what_is_behind() -> None:
    from agent.runtime.arrival import ArrivalMarks

    marks = ArrivalMarks()
    where = ("t", 0)
    assert marks.earliest_ms(where, 5) is None
    marks.note(where, 10, 1_000)
    marks.note(where, 10, 2_000)  # the same end, seen later
    marks.note(where, 20, 3_000)
    assert marks.earliest_ms(where, 9) is None  # was in the log already
    assert marks.earliest_ms(where, 10) == 2_000
    assert marks.earliest_ms(where, 25) == 3_000
    assert marks.earliest_ms(where, 12) is None  # the mark at 10 was dropped once offset 25 passed
    marks.note(where, 3, 4_000)  # the log went back: start over
    assert marks.earliest_ms(where, 5) == 4_000


class _Captured:
    """Stands in for the CLI's agent runner: keeps the config ``watchkeeper run`` built."""

    def __init__(self) -> None:
        self.configs: list[AgentConfig] = []

    async def __call__(self, config: AgentConfig) -> None:
        self.configs.append(config)


def test_the_settings_come_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import agent.cli

    captured = _Captured()
    monkeypatch.setattr(agent.cli, "_run", captured)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    base = ["run", "--kafka-bootstrap", "localhost:9092", "--rules", str(rules), "--no-log-json"]
    runner = CliRunner()
    assert runner.invoke(agent.cli.app, base).exit_code == 0
    result = runner.invoke(agent.cli.app, [*base, "--stall-batches", "3"], env={"WATCHKEEPER_MAX_EVENT_SKEW_S": "2.5"})
    assert result.exit_code == 0, result.output
    assert [(c.max_event_skew_s, c.stall_batches) for c in captured.configs] == [(10.0, 5), (2.5, 3)]
