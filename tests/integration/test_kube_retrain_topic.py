"""retrain via: topic against the real Kafka broker: one JSON request per decision, keyed by model."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from actions.base import ActionContext
from actions.retrain import Retrain
from agent.model import Alert, AlertState
from agent.runtime.embedded_broker import EmbeddedBroker
from tests.kafka_tools import consume

pytestmark = pytest.mark.integration


async def test_retrain_request_reaches_the_topic(broker: EmbeddedBroker, unique_topic: Callable[[str], str]) -> None:
    topic = unique_topic("retrain")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:

        async def publish(topic: str, key: bytes, value: bytes) -> None:
            await producer.send_and_wait(topic, value=value, key=key)

        action = Retrain(
            Retrain.Params.model_validate({"type": "retrain", "topic": topic}),
            ActionContext(publish=publish, agent_id="agent-1"),
        )
        alert = Alert(
            fingerprint="fp",
            rule_id="drift",
            state=AlertState.FIRING,
            labels={"alertname": "FeatureDrift", "model": "fraud", "model_version": "3"},
            annotations={},
            active_at=500.0,
            fired_at=560.0,
            value=0.4,
            evidence={"psi": 0.4},
        )
        plan = await action.plan(alert, action.target(alert))
        after = await action.apply(plan, alert)
    finally:
        await producer.stop()
    records = await consume(broker.bootstrap, topic, n=1)
    assert len(records) == 1 and records[0].key == b"fraud"
    request = json.loads(records[0].value)
    assert request["model"] == "fraud" and request["model_version"] == "3"
    assert request["decision_key"] == after["decision_key"] and request["evidence"] == {"psi": 0.4}
    assert request["window"]["to"] == 560.0
