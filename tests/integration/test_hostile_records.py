"""Hostile records through the real broker: none stalls the agent, none fakes a duration.

A producer writes, on the real Tansu broker, integers far beyond 64 bits in every
source, broken JSON, a record that makes the pipeline raise, and sixty records sent in
one instant with event times forged over the minute before, then sixty more whose Kafka
record timestamps are forged as well (CreateTime). Then honest records that must page. The agent (the real ``AgentApp``, default event-time bound) dead-letters the
hostile ones with their reason kinds, never fires the ``for: 30s`` rule from the
forged burst, pages on the honest record, and consumes everything (lag back to zero).

Before issue 12 the first 10**400 stalled its partition for ever, in silence.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiokafka import AIOKafkaProducer

from agent.model import Alert, AlertState
from agent.runtime.app import AgentApp
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.notifier import TerminalSink
from agent.runtime.pipeline import Pipeline
from tests.integration.harness import Transitions, agent_config, eventually, inference, sample, unique_name
from tests.kafka_tools import consume, produce

pytestmark = pytest.mark.integration

HUGE = 10**400
SKEW_S = 10.0


def _rules(page: str, slow: str) -> str:
    return f"""\
groups:
  - name: hostile
    rules:
      - alert: {page}
        source: inference
        by: [service]
        detector: {{kind: threshold, field: latency_ms, op: ">", threshold: 1000}}
        for: 0s
        labels: {{severity: page}}
      - alert: {slow}
        source: inference
        by: [service]
        detector: {{kind: threshold, field: latency_ms, op: ">", threshold: 1000}}
        for: 30s
        labels: {{severity: page}}
"""


class ExplodingPipeline(Pipeline):
    """The real pipeline, raising on one service: stands in for a bug no contract check catches."""

    def process(self, event: Any, where: Any = None) -> list[Alert]:
        if getattr(event, "service", "").startswith("boom"):
            raise RuntimeError("pipeline failed on purpose")
        return super().process(event, where)


def _llm(ts: float, **over: Any) -> bytes:
    event = {"type": "llm", "ts": ts, "service": "chat", "model": "m", "prompt_version": "1", "tenant": "t",
             "prompt_tokens": 10, "completion_tokens": 10, "latency_ms": 100.0, "status": "ok", **over}
    return json.dumps(event).encode()


def _gpu(ts: float, **over: Any) -> bytes:
    event = {"type": "gpu", "ts": ts, "node": "n1", "gpu": 0, "util_pct": 50.0, "mem_used_bytes": 10**9,
             "mem_total_bytes": 8 * 10**10, "temp_c": 60.0, "power_w": 200.0, **over}
    return json.dumps(event).encode()


async def test_hostile_records_are_dead_lettered_and_honest_ones_page(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    page, slow = unique_name("WkHostilePage"), unique_name("WkHostileFor30s")
    rules = tmp_path / "rules.yaml"
    rules.write_text(_rules(page, slow))
    config = agent_config(broker.bootstrap, unique_topic, rules, max_event_skew_s=SKEW_S)
    forger, honest, boom = unique_name("forger"), unique_name("honest"), unique_name("boom")
    forger2, honest2 = unique_name("forger"), unique_name("honest")
    now = time.time()

    burst = [(forger, inference(forger, 5000.0, now - 60 + i)) for i in range(61)]
    hostile_inference = [
        (boom, inference(boom, 10.0, now)),  # the pipeline raises: internal
        (honest, inference(honest, 10.0, now, features={"amount": HUGE})),
        (honest, inference(honest, 10.0, now, prediction=-HUGE)),
        (honest, inference(honest, 10.0, HUGE)),
        (honest, b'{"type": "inference", "ts": '),
    ]
    hostile_llm = [("chat", _llm(now, prompt_tokens=HUGE)), ("chat", _llm(now, completion_tokens=2**64))]
    hostile_gpu = [("n1", _gpu(now, mem_used_bytes=HUGE, mem_total_bytes=HUGE)), ("n1", _gpu(now, xid_errors=HUGE))]

    transitions = Transitions()
    app = AgentApp(config, TerminalSink(io.StringIO()), on_transition=transitions, serve_http=False)
    app.pipeline = ExplodingPipeline(app.rules, max_series=config.max_series, staleness_s=config.staleness_s,
                                     max_lateness_s=config.max_lateness_s)
    await app.start()
    try:
        registry = app.metrics.registry
        metas = await produce(broker.bootstrap, config.topics.llm, hostile_llm)  # type: ignore[arg-type]
        metas += await produce(broker.bootstrap, config.topics.gpu, hostile_gpu)  # type: ignore[arg-type]
        burst_meta = await produce(broker.bootstrap, config.topics.inference, burst)  # type: ignore[arg-type]
        metas += burst_meta
        metas += await produce(broker.bootstrap, config.topics.inference, hostile_inference)  # type: ignore[arg-type]
        # last, the honest record: the agent must still consume, and page on it
        honest_meta = await produce(broker.bootstrap, config.topics.inference, [(honest, inference(honest, 5000.0, time.time()))])
        metas += honest_meta
        sent = len(metas)

        def consumed() -> float:
            return sum(sample(registry, "watchkeeper_events_total", {"source": s, "outcome": o})
                       for s in ("inference", "llm", "gpu") for o in ("processed", "dead_letter", "late"))

        await eventually(lambda: transitions.of(AlertState.FIRING, honest) != [], timeout_s=30,
                         what="the honest record after the hostile ones to page",
                         detail=lambda: f"consumed {consumed()} of {sent}")
        await eventually(lambda: consumed() == sent, timeout_s=20, what="every record consumed",
                         detail=lambda: f"consumed {consumed()} of {sent}")

        # the forger learns: record timestamps forged too, on a partition the agent watches live
        await asyncio.sleep(1.5)  # the agent has noted where every partition ends, and when
        later = time.time()
        forged_ct = [(forger2, inference(forger2, 5000.0, later - 60 + i), int((later - 60 + i) * 1000)) for i in range(61)]
        await _produce_stamped(broker.bootstrap, config.topics.inference, forged_ct)
        await _produce_stamped(broker.bootstrap, config.topics.inference, [(honest2, inference(honest2, 5000.0, time.time()), None)])
        sent += len(forged_ct) + 1
        await eventually(lambda: transitions.of(AlertState.FIRING, honest2) != [], timeout_s=30,
                         what="the honest record after the forged-CreateTime burst to page",
                         detail=lambda: f"consumed {consumed()} of {sent}")
        await eventually(lambda: consumed() == sent, timeout_s=20, what="every record consumed",
                         detail=lambda: f"consumed {consumed()} of {sent}")
        await app._export_lag()  # noqa: SLF001 - the exporter's round, now rather than in 5 s
        lags = {(s.labels["topic"], s.labels["partition"]): s.value
                for m in registry.collect() if m.name == "watchkeeper_consumer_lag" for s in m.samples}
        assert lags and all(v == 0 for v in lags.values()), lags
        assert app.readiness() == (True, "")
        assert app.stalls.stalled() == []

        skewed = [m for m, (_, v) in zip(burst_meta, burst, strict=True)
                  if abs(json.loads(v)["ts"] * 1000 - m.timestamp) > SKEW_S * 1000]
        assert len(skewed) >= 45, "the forged minute is mostly outside the bound"
        skew_total = sample(registry, "watchkeeper_dead_letters_total", {"topic": config.topics.inference, "reason": "skew"})
        assert skew_total - len(skewed) >= 45, "the CreateTime-forged minute is mostly refused"
        expected = {"skew": int(skew_total), "internal": 1, "invalid": 8}
        dead = await consume(broker.bootstrap, config.topics.dlq, n=sum(expected.values()), timeout_s=15)
        kinds: dict[str, int] = {}
        for record in dead:
            headers = {k: v.decode() for k, v in record.headers}
            kinds[headers["watchkeeper-reason-kind"]] = kinds.get(headers["watchkeeper-reason-kind"], 0) + 1
            if headers["watchkeeper-reason-kind"] == "internal":
                assert headers["watchkeeper-reason"] == "internal: RuntimeError: pipeline failed on purpose"
                assert record.value == inference(boom, 10.0, now)  # the original bytes, replayable
        assert kinds == expected
        for kind, n in expected.items():
            total = sum(sample(registry, "watchkeeper_dead_letters_total", {"topic": t, "reason": kind})
                        for t in (config.topics.inference, config.topics.llm, config.topics.gpu))
            assert total == n, kind

        assert [a.labels["alertname"] for a in transitions.of(AlertState.FIRING, honest)] == [page]
        assert [a.labels["alertname"] for a in transitions.of(AlertState.FIRING, honest2)] == [page]
        assert all(a.labels["alertname"] != slow for a in transitions.of(AlertState.FIRING)), "the forged minute fired for: 30s"
    finally:
        await app.stop()


async def _produce_stamped(bootstrap: str, topic: str, records: list[tuple[str, bytes, int | None]]) -> None:
    """Send ``(key, value, record timestamp ms)``: a producer sets CreateTime as it likes."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, value=v, key=k.encode(), timestamp_ms=ms) for k, v, ms in records]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
