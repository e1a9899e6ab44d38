"""The shipped sequential rules page Slack within seconds of a fault, through the real stack.

Two services of one agent running the shipped ``rules/inference.yaml``: one turns ten times
slower, the other goes from 0.5 % to 20 % errors. Five minutes of clean history (the
baseline the detector needs) and the fault are published to the Tansu broker with their own
event times, the agent pages the real Alertmanager, and Slack (the recorder) hears the
``InferenceLatencyJump`` and ``InferenceErrorJump`` pages; in event time they fire within a
second and within seconds of the first bad request. Recovery resolves them after
``keep_firing_for``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.model import AlertState
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.selfmetrics import SelfMetrics
from tests.integration.harness import Transitions, agent_config, inference, running_agent, unique_name
from tests.kafka_tools import produce
from tests.testbed import Alertmanager, SlackRecorder

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "rules" / "inference.yaml"
RATE = 10.0  # requests/s of each service
WARM_S, FAULT_S, RECOVERY_S = 320.0, 20.0, 90.0


def _about(alertname: str, status: str, service: str) -> Callable[[dict], bool]:
    def match(message: dict) -> bool:
        return any(
            a.get("title") == f"[{status.upper()}] {alertname}" and f"service={service}" in a.get("text", "")
            for a in message.get("attachments", [])
        )

    return match


def _events(slow: str, failing: str, t0: float, rng: random.Random) -> list[tuple[str, bytes]]:
    out = []
    for i in range(int((WARM_S + FAULT_S + RECOVERY_S) * RATE)):
        ts = t0 + i / RATE
        bad = WARM_S <= i / RATE < WARM_S + FAULT_S
        latency = rng.lognormvariate(math.log(15.6), 0.5)
        out.append((slow, inference(slow, round(latency * (10 if bad else 1), 3), ts)))
        status = "error" if rng.random() < (0.2 if bad else 0.005) else "ok"
        out.append((failing, inference(failing, round(latency, 3), ts, status=status)))
    return out


async def test_shipped_sequential_rules_page_within_seconds_and_resolve(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
) -> None:
    slow, failing = unique_name("slow"), unique_name("failing")
    config = agent_config(broker.bootstrap, unique_topic, RULES)
    metrics = SelfMetrics()
    transitions = Transitions()
    t0 = time.time() - 900.0  # event time: the whole story lies in the past
    onset = t0 + WARM_S
    events = _events(slow, failing, t0, random.Random(7))
    half = int((WARM_S + FAULT_S) * RATE) * 2  # history and fault first, recovery after the pages

    async with (
        AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
        running_agent(config, client, metrics=metrics, on_transition=transitions),
    ):
        await produce(broker.bootstrap, config.topics.inference, events[:half])
        latency_page = await asyncio.to_thread(slack_recorder.wait_for, _about("InferenceLatencyJump", "firing", slow), 60)
        error_page = await asyncio.to_thread(slack_recorder.wait_for, _about("InferenceErrorJump", "firing", failing), 60)
        await produce(broker.bootstrap, config.topics.inference, events[half:])
        await asyncio.to_thread(slack_recorder.wait_for, _about("InferenceLatencyJump", "resolved", slow), 60)
        await asyncio.to_thread(slack_recorder.wait_for, _about("InferenceErrorJump", "resolved", failing), 60)

    fired = {a.labels["alertname"]: a for a in transitions.of(AlertState.FIRING, slow) + transitions.of(AlertState.FIRING, failing)}
    # event time from the first bad request to the page: h = ln(2 * 30 d * 86400 s * 10/s) = 17.8
    # nats; ~7 slow requests (0.7 s), ~40-80 requests at 20 % errors (4-8 s)
    assert 0.0 <= fired["InferenceLatencyJump"].fired_at - onset <= 1.5
    assert 0.0 <= fired["InferenceErrorJump"].fired_at - onset <= 15.0
    assert [a.labels["alertname"] for a in transitions.of(AlertState.FIRING, slow)].count("InferenceLatencyJump") == 1
    assert [a.labels["alertname"] for a in transitions.of(AlertState.FIRING, failing)].count("InferenceErrorJump") == 1
    assert not [a for a in transitions.of(AlertState.FIRING, failing) if a.labels["alertname"] == "InferenceLatencyJump"]
    latency_text = latency_page["attachments"][0]["text"]
    assert f"summary={slow}/ranker slowed down to " in latency_text and "(usually 1" in latency_text
    assert "the sequential test fired after " in latency_text and "nats against a threshold of 17.8" in latency_text
    assert f"summary={failing}/ranker fails " in error_page["attachments"][0]["text"]
