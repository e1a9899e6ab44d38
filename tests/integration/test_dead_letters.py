"""Poison records go to the dead-letter topic byte for byte; the consumer keeps going.

Every kind of bad record a producer can write lands on the inference topic between
valid events, on one partition (one key), so the valid event after them proves that
no poison record stopped or rewound that partition's consumer.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.model import AlertState
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.notifier import TerminalSink
from tests.integration.harness import (
    Transitions,
    agent_config,
    eventually,
    inference,
    rule_file,
    running_agent,
    sample,
    unique_name,
)
from tests.kafka_tools import consume, produce

pytestmark = pytest.mark.integration

MAX_EVENT_BYTES = 1024


def _raw(ts: float, latency: str, **fields: str) -> bytes:
    """An inference event written by hand, so non-JSON-standard numbers can be spelled."""
    body = {
        "type": '"inference"',
        "ts": repr(ts),
        "service": '"SVC"',
        "model": '"ranker"',
        "model_version": '"7"',
        "latency_ms": latency,
        "status": '"ok"',
        **fields,
    }
    return ("{" + ",".join(f'"{k}":{v}' for k, v in body.items() if v) + "}").encode()


async def test_poison_records_are_dead_lettered_and_the_stream_goes_on(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    alertname = unique_name("WkDeadLetters")
    service = unique_name("svc")
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(alertname, threshold=1000, window_s=600, min_count=1))
    config = agent_config(broker.bootstrap, unique_topic, rules, max_event_bytes=MAX_EVENT_BYTES)
    now = time.time()
    t0 = now - 120

    def valid(i: int, latency: float = 100.0) -> bytes:
        return inference(service, latency, t0 + i)

    def raw(i: int, latency: str, **fields: str) -> bytes:
        return _raw(t0 + i, latency, **fields).replace(b"SVC", service.encode())

    # (record value, fragment the dead letter's reason must contain, reason kind)
    poison: list[tuple[bytes | None, str, str]] = [
        (b'{"type": "inference", "ts": ', "invalid JSON", "invalid"),
        (raw(1, '"fast"'), "latency_ms: Input should be a valid number", "invalid"),
        (raw(2, "NaN"), "latency_ms: Input should be a finite number", "invalid"),
        (raw(3, "Infinity"), "latency_ms: Input should be a finite number", "invalid"),
        (raw(4, "1e999"), "latency_ms: Input should be a finite number", "invalid"),  # json -> inf
        (raw(5, "-3"), "latency_ms: Input should be greater than or equal to 0", "invalid"),
        (raw(6, "12", model_version=""), "model_version: Field required", "invalid"),
        (raw(7, "12", status='"maybe"'), "status: Input should be 'ok' or 'error'", "invalid"),
        (raw(8, "12", type='"metrics"'), "'metrics'", "invalid"),
        (b'["not", "an", "object"]', "Input should be an object", "invalid"),
        (inference(service, 12.0, t0 + 9, labels={"pad": "x" * MAX_EVENT_BYTES}), "max_event_bytes 1024", "oversized"),
        (b"", "empty", "empty"),
        (None, "empty", "empty"),  # a tombstone
        (inference(service, 12.0, now + 3600), "future", "future"),
        (inference(service, 12.0, t0 - 3600), "late", "late"),  # 1 h behind the service's clock
    ]
    sent: list[tuple[str, bytes | None]] = [(service, valid(0))]
    poison_index: list[int] = []  # where in `sent` each poison record is
    for value, _, _ in poison:
        poison_index.append(len(sent))
        sent.append((service, value))
        sent.append((service, valid(len(sent))))
    sent.append((service, valid(len(sent), latency=50_000.0)))  # after every poison: must fire
    n_valid = len(sent) - len(poison)

    transitions = Transitions()
    async with running_agent(config, TerminalSink(io.StringIO()), on_transition=transitions) as app:
        registry = app.metrics.registry
        meta = await produce(broker.bootstrap, config.topics.inference, sent)  # type: ignore[arg-type]

        def events(outcome: str) -> float:
            return sample(registry, "watchkeeper_events_total", {"source": "inference", "outcome": outcome})

        await eventually(
            lambda: transitions.of(AlertState.FIRING, service) != [],
            timeout_s=20,
            what="the valid event after the poison records to fire the alert",
            detail=lambda: f"events: processed={events('processed')} dead_letter={events('dead_letter')}",
        )
        dead = await consume(broker.bootstrap, config.topics.dlq, n=len(poison), timeout_s=15)

        assert events("processed") == n_valid
        assert events("dead_letter") == len(poison) - 1
        assert events("late") == 1
        by_kind = {
            kind: sample(registry, "watchkeeper_dead_letters_total", {"topic": config.topics.inference, "reason": kind})
            for kind in ("invalid", "oversized", "empty", "future", "late")
        }
        assert by_kind == {"invalid": 10, "oversized": 1, "empty": 2, "future": 1, "late": 1}
        assert sample(registry, "watchkeeper_alert_transitions_total", {"state": "firing"}) == 1

    assert len({m.partition for m in meta}) == 1, "one key, one partition: order is kept"
    where = {(m.partition, m.offset): value for m, (_, value) in zip(meta, sent, strict=True)}
    poison_at = [(meta[i].partition, meta[i].offset) for i in poison_index]
    assert len(dead) == len(poison), [(r.offset, r.value) for r in dead]
    letters = sorted(dead, key=lambda r: int(dict(r.headers)["watchkeeper-offset"]))
    for record, (value, fragment, kind), position in zip(letters, poison, poison_at, strict=True):
        headers = {k: v.decode() for k, v in record.headers}
        source = (int(headers["watchkeeper-partition"]), int(headers["watchkeeper-offset"]))
        context = f"dead letter {headers} for {value!r}"
        assert headers["watchkeeper-topic"] == config.topics.inference, context
        assert source == position, context
        assert record.value == value, context  # the original bytes (or null), replayable
        assert (headers.get("watchkeeper-value") == "null") == (value is None), context
        assert where[source] == value, context
        assert record.key == service.encode(), context
        assert fragment in headers["watchkeeper-reason"], context
        assert headers["watchkeeper-reason"].startswith(kind), context
        assert headers["watchkeeper-reason-kind"] == kind, context
        assert int(headers["watchkeeper-timestamp-ms"]) > 0, context

    fired = transitions.of(AlertState.FIRING, service)
    assert [a.name for a in fired] == [alertname]
    assert fired[0].fired_at == pytest.approx(t0 + len(sent) - 1)
    assert json.loads(sent[-1][1] or b"{}")["latency_ms"] == 50_000.0
