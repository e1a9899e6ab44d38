"""An Alertmanager outage delays a page but never loses it.

The alert fires while Alertmanager is down: the notifier keeps the transition (its
alerts-topic offset stays uncommitted), retries with backoff and counts every failed
post; Slack hears nothing. Once Alertmanager is back the retry gets through and the
page arrives, without a single new event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from agent.model import AlertState
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.selfmetrics import SelfMetrics
from tests.integration.harness import (
    Transitions,
    agent_config,
    eventually,
    inference,
    rule_file,
    running_agent,
    sample,
    slack_about,
    unique_name,
)
from tests.kafka_tools import produce
from tests.testbed import Alertmanager, SlackRecorder

pytestmark = pytest.mark.integration


async def test_page_fired_during_an_outage_arrives_when_alertmanager_returns(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    alertname = unique_name("WkOutage")
    service = unique_name("search")
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(alertname, threshold=500))
    config = agent_config(broker.bootstrap, unique_topic, rules)
    metrics = SelfMetrics()
    transitions = Transitions()
    paged = slack_about(alertname, "firing")

    def failures() -> float:
        return sample(metrics.registry, "watchkeeper_alertmanager_send_failures_total", {"url": alertmanager.url})

    await asyncio.to_thread(alertmanager.stop)  # blocking calls stay off the agent's loop
    try:
        async with (
            AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
            running_agent(config, client, metrics=metrics, on_transition=transitions),
        ):
            t0 = time.time() - 120
            await produce(
                broker.bootstrap,
                config.topics.inference,
                [(service, inference(service, 2000.0, t0 + i)) for i in range(3)],
            )
            await eventually(
                lambda: failures() >= 2,
                timeout_s=20,
                what="two failed posts to the stopped Alertmanager",
                detail=lambda: f"transitions: {transitions.alerts}",
            )
            assert [a.name for a in transitions.of(AlertState.FIRING, service)] == [alertname]
            assert sample(metrics.registry, "watchkeeper_alertmanager_pending_notifications") == 1
            assert not any(paged(m) for m in slack_recorder.messages), "paged while Alertmanager was down"

            await asyncio.to_thread(alertmanager.start)
            page = await asyncio.to_thread(slack_recorder.wait_for, paged, 30)

            await eventually(
                lambda: sample(metrics.registry, "watchkeeper_alertmanager_pending_notifications") == 0,
                timeout_s=5,
                what="the delivered notification to leave the pending gauge",
            )
            assert (
                sample(metrics.registry, "watchkeeper_alertmanager_sends_total", {"url": alertmanager.url, "outcome": "ok"}) == 1
            )
    finally:
        await asyncio.to_thread(alertmanager.start)  # a no-op when it runs: later tests share it

    assert f"service={service}" in page["attachments"][0]["text"]
    assert f"summary=mean latency of {service} is 2000 ms" in page["attachments"][0]["text"]
    assert sum(paged(m) for m in slack_recorder.messages) == 1


async def test_page_pending_at_shutdown_is_sent_by_the_next_agent(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """The alerts topic is a durable outbox: an agent stopped mid-outage leaves the page there."""
    alertname = unique_name("WkOutbox")
    service = unique_name("search")
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(alertname, threshold=500))
    config = agent_config(broker.bootstrap, unique_topic, rules)
    # The second agent's join waits on the first one's session (Tansu): keep it short.
    config = replace(config, kafka=replace(config.kafka, session_timeout_ms=1000))
    paged = slack_about(alertname, "firing")

    await asyncio.to_thread(alertmanager.stop)
    try:
        metrics = SelfMetrics()
        async with (
            AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
            running_agent(config, client, metrics=metrics),
        ):
            t0 = time.time() - 120
            events = [(service, inference(service, 2000.0, t0 + i)) for i in range(3)]
            await produce(broker.bootstrap, config.topics.inference, events)
            await eventually(
                lambda: sample(metrics.registry, "watchkeeper_alertmanager_send_failures_total", {"url": alertmanager.url}) >= 1,
                timeout_s=20,
                what="a failed post to the stopped Alertmanager",
            )
        # Stopped with the page undelivered; Alertmanager comes back; a new agent, same group.
        await asyncio.to_thread(alertmanager.start)
        assert not any(paged(m) for m in slack_recorder.messages)
        again = SelfMetrics()
        transitions = Transitions()
        async with (
            AlertmanagerClient([alertmanager.url], metrics=again) as client,
            running_agent(config, client, metrics=again, on_transition=transitions),
        ):
            page = await asyncio.to_thread(slack_recorder.wait_for, paged, 30)
            assert transitions.alerts == [], "the events were committed: the page comes from the outbox"
            assert sample(again.registry, "watchkeeper_events_total", {"source": "inference", "outcome": "processed"}) == 0
    finally:
        await asyncio.to_thread(alertmanager.start)

    assert f"service={service}" in page["attachments"][0]["text"]
