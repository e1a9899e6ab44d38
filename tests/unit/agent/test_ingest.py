"""Ingestion: parsing and dead-lettering per record, then the FastStream handler in memory."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
from faststream.kafka import TestKafkaBroker

from agent.config import AgentConfig, KafkaConfig
from agent.model import AlertState
from agent.runtime.app import AgentApp
from agent.runtime.ingest import BatchProcessor, dead_letter_headers
from agent.runtime.notifier import TerminalSink, decode_alerts
from agent.runtime.pipeline import Pipeline
from agent.runtime.selfmetrics import SelfMetrics
from tests.unit.agent.rulebook import one_rule

NOW = 1_700_000_000.0


@dataclass
class Rec:
    value: bytes | None
    offset: int = 0
    topic: str = "watchkeeper.inference"
    partition: int = 0
    key: bytes | None = b"svc"
    timestamp: int = 0


def event(**over):
    base = {"type": "inference", "ts": NOW, "service": "svc", "model": "m", "model_version": 3, "latency_ms": 50.0, "status": "ok"}
    base.update(over)
    return json.dumps(base, allow_nan=True).encode()


def processor(rules=None, **kw):
    metrics = SelfMetrics()
    pipeline = Pipeline(rules or one_rule("{kind: threshold, field: latency_ms, op: '>', threshold: 100}"))
    return BatchProcessor(pipeline=lambda: pipeline, metrics=metrics, clock=lambda: NOW, topic_sources={"watchkeeper.inference": "inference"}, **kw), metrics


BAD = [
    (b"{not json", "invalid JSON"),
    (event(latency_ms="fast"), "latency_ms"),
    (event(latency_ms=math.nan), "latency_ms"),
    (event(latency_ms=math.inf), "latency_ms"),
    (event(status="maybe"), "status"),
    (json.dumps({"type": "inference", "ts": NOW}).encode(), "service"),
    (event(type="metrics"), "invalid event"),
    (event(ts="yesterday"), "RFC 3339"),
    (event(ts="2026-01-01T00:00:00"), "timezone"),
    (event(ts=NOW + 3600), "future"),
    (b"", "empty"),
    (event(features={"x": [1, 2]}), "features"),
]


@pytest.mark.parametrize(("value", "reason"), BAD)
def test_bad_records_become_dead_letters_with_a_reason(value, reason):
    proc, metrics = processor()
    out = proc.process([Rec(event()), Rec(value, offset=7), Rec(event(), offset=8)])
    assert out.processed == 2
    [dl] = out.dead_letters
    assert reason in dl.reason
    assert dl.value == value and dl.offset == 7 and dl.topic == "watchkeeper.inference"
    headers = dead_letter_headers(dl)
    assert headers["watchkeeper-offset"] == "7" and reason in headers["watchkeeper-reason"]
    assert metrics.registry.get_sample_value("watchkeeper_events_total", {"source": "inference", "outcome": "dead_letter"}) == 1
    assert metrics.registry.get_sample_value("watchkeeper_events_total", {"source": "inference", "outcome": "processed"}) == 2


def test_oversized_record_is_dead_lettered():
    proc, _ = processor(max_event_bytes=100)
    out = proc.process([Rec(event(labels={"pad": "x" * 200}))])
    assert out.dead_letters[0].reason.startswith("oversized")


def test_late_record_is_counted_as_late():
    proc, metrics = processor()
    out = proc.process([Rec(event(ts=NOW)), Rec(event(ts=NOW - 3600), offset=1)])
    assert out.dead_letters[0].kind == "late"
    assert metrics.registry.get_sample_value("watchkeeper_events_total", {"source": "inference", "outcome": "late"}) == 1


def test_versions_sent_as_numbers_are_identifiers():
    proc, _ = processor()
    out = proc.process([Rec(event(model_version=3, latency_ms=500))])
    assert out.transitions[0].state is AlertState.FIRING


def test_unknown_fields_are_ignored_for_forward_compatibility():
    proc, _ = processor()
    out = proc.process([Rec(event(new_field_from_v2={"a": 1}))])
    assert out.processed == 1 and not out.dead_letters


def test_positions_recorded_only_when_asked():
    proc, _ = processor(record_positions=True)
    assert proc.process([Rec(event(), offset=4), Rec(b"x", offset=5)]).positions == [
        ("watchkeeper.inference", 0, 4),
        ("watchkeeper.inference", 0, 5),
    ]


def test_decode_alerts_keeps_last_snapshot_and_skips_garbage():
    proc, _ = processor()
    fired = proc.process([Rec(event(latency_ms=500))]).transitions
    resolved = proc.process([Rec(event(latency_ms=5))]).transitions
    raw = [json.dumps(a.to_dict()).encode() for a in fired + resolved]
    alerts = decode_alerts([raw[0], b"garbage", raw[1]])
    assert [a.state for a in alerts] == [AlertState.RESOLVED]


async def test_handler_publishes_dead_letters_and_alert_transitions(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: Slow\n    source: inference\n"
        "    detector: {kind: threshold, field: latency_ms, op: '>', threshold: 100}\n"
    )
    # the event below is dated 2026-11-25 and sent now: a replay, event time trusted as sent
    config = AgentConfig(kafka=KafkaConfig("localhost:9092"), rules=(str(rules),), http_addr="127.0.0.1:0", max_event_skew_s=0.0)
    app = AgentApp(config, TerminalSink(), serve_http=False)
    seen = {"dlq": [], "alerts": []}

    @app.broker.subscriber(config.topics.dlq)
    async def dlq(body: bytes) -> None:
        seen["dlq"].append(body)

    async with TestKafkaBroker(app.broker) as br:
        good = json.dumps({"type": "inference", "ts": "2026-11-25T10:00:00Z", "service": "s", "model": "m", "model_version": "1", "latency_ms": 900, "status": "ok"}).encode()
        await br.publish(b"{broken", config.topics.inference)
        await br.publish(good, config.topics.inference)
        assert seen["dlq"] == [b"{broken"]
        dlq.mock.assert_called_once()
        fired = app.pipeline.firing()
        assert [a.name for a in fired] == ["Slow"]
    assert app.metrics.registry.get_sample_value("watchkeeper_dead_letters_total", {"topic": config.topics.inference, "reason": "invalid"}) == 1
