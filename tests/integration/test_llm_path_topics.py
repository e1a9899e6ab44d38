"""The LLM path's topics through the real broker: retrieval and feedback events reach their
rules, and records out of the contract's bounds are dead-lettered with the field named."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.model import AlertState
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.notifier import TerminalSink
from tests.integration.harness import Transitions, agent_config, eventually, running_agent, sample, unique_name
from tests.kafka_tools import consume, produce

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: llm-path
    rules:
      - alert: {empty}
        source: retrieval
        by: [service, index, index_version]
        detector: {{kind: threshold, field: empty, agg: mean, window_s: 60, op: ">", threshold: 0.5, min_count: 4}}
      - alert: {ratings}
        source: feedback
        by: [service, prompt_version]
        detector: {{kind: threshold, field: score, agg: mean, window_s: 600, op: "<", threshold: 0, min_count: 3}}
"""


def _retrieval(service: str, ts: float, hits: int, **more) -> bytes:
    event = {"type": "retrieval", "ts": ts, "service": service, "index": "docs", "index_version": 8, "latency_ms": 4.0,
             "k": 5, "hits": hits, "status": "ok", **more}  # fmt: skip
    return json.dumps(event).encode()


def _feedback(service: str, ts: float, score: float) -> bytes:
    return json.dumps({"type": "feedback", "ts": ts, "service": service, "request_id": f"r{ts}", "prompt_version": 3, "score": score}).encode()


async def test_retrieval_and_feedback_reach_their_rules_and_bad_records_are_dead_lettered(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    empty, ratings = unique_name("WkEmptyHits"), unique_name("WkRatings")
    service = unique_name("rag")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(empty=empty, ratings=ratings))
    config = agent_config(broker.bootstrap, unique_topic, rules)
    topics = dataclasses.replace(config.topics, retrieval=unique_topic("retrieval"), feedback=unique_topic("feedback"))
    config = dataclasses.replace(config, topics=topics)
    t0 = time.time() - 60

    poison_retrieval = [
        (_retrieval(service, t0 + 3, 5, embedding=[0.0] * 1025), "embedding"),
        (_retrieval(service, t0 + 4, -1), "hits"),
    ]
    poison_feedback = [(_feedback(service, t0 + 1, 2.0), "score")]
    retrieval = [_retrieval(service, t0 + i, 5, embedding=[0.1, 0.2]) for i in range(3)]
    retrieval += [v for v, _ in poison_retrieval]
    retrieval += [_retrieval(service, t0 + 5 + i, 0) for i in range(6)]
    feedback = [poison_feedback[0][0]] + [_feedback(service, t0 + 2 + i, -1.0) for i in range(3)]

    transitions = Transitions()
    async with running_agent(config, TerminalSink(io.StringIO()), on_transition=transitions) as app:
        await produce(broker.bootstrap, topics.retrieval, [(service, v) for v in retrieval])
        await produce(broker.bootstrap, topics.feedback, [(service, v) for v in feedback])
        await eventually(
            lambda: {a.name for a in transitions.of(AlertState.FIRING, service)} == {empty, ratings},
            timeout_s=20,
            what="both LLM-path rules to fire",
            detail=lambda: str([(a.name, a.state) for a in transitions.alerts]),
        )
        dead = await consume(broker.bootstrap, topics.dlq, n=3, timeout_s=15)
        registry = app.metrics.registry
        assert sample(registry, "watchkeeper_events_total", {"source": "retrieval", "outcome": "processed"}) == 9
        assert sample(registry, "watchkeeper_events_total", {"source": "retrieval", "outcome": "dead_letter"}) == 2
        assert sample(registry, "watchkeeper_events_total", {"source": "feedback", "outcome": "processed"}) == 3
        assert sample(registry, "watchkeeper_events_total", {"source": "feedback", "outcome": "dead_letter"}) == 1

    expected = {v: (topics.retrieval, f) for v, f in poison_retrieval} | {v: (topics.feedback, f) for v, f in poison_feedback}
    assert len(dead) == 3
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        topic, fragment = expected[record.value]
        assert headers["watchkeeper-topic"] == topic
        assert headers["watchkeeper-reason-kind"] == "invalid" and fragment in headers["watchkeeper-reason"], headers
    fired = {a.name: a for a in transitions.of(AlertState.FIRING, service)}
    assert fired[empty].labels["index_version"] == "8"
    assert fired[ratings].labels["prompt_version"] == "3"
