"""Events in, a Slack page out: the whole path through Kafka and a real Alertmanager.

The agent consumes an inference stream from the Tansu broker, its threshold rule goes
pending, fires after ``for``, and the transition travels over the alerts topic to the
notifier, which posts it to Alertmanager, which pages Slack (the recorder). When the
stream recovers the alert resolves after ``keep_firing_for`` and Slack hears that too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.model import AlertState
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.selfmetrics import SelfMetrics
from tests.integration.harness import (
    Transitions,
    agent_config,
    inference,
    rule_file,
    running_agent,
    slack_about,
    unique_name,
)
from tests.kafka_tools import produce
from tests.testbed import Alertmanager, SlackRecorder

pytestmark = pytest.mark.integration


async def test_threshold_crossing_pages_slack_and_recovery_resolves_it(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    alertname = unique_name("WkPaging")
    service = unique_name("checkout")
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(alertname, threshold=500, window_s=10, min_count=3, for_s=2, keep_firing_for_s=2))
    config = agent_config(broker.bootstrap, unique_topic, rules)
    metrics = SelfMetrics()
    transitions = Transitions()
    t0 = time.time() - 180  # event time, a few minutes back

    async with (
        AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
        running_agent(config, client, metrics=metrics, on_transition=transitions) as app,
    ):
        # 900 ms for 6 s of event time: pending at t0+2 (min_count 3), firing at t0+4 (for 2s).
        slow = [(service, inference(service, 900.0, t0 + i)) for i in range(6)]
        await produce(broker.bootstrap, config.topics.inference, slow)

        # wait_for blocks its thread: run it off the loop that runs the agent.
        firing = await asyncio.to_thread(slack_recorder.wait_for, slack_about(alertname, "firing"), 30)

        # Recovery 30 s later in event time: the 10 s window holds only fast requests, the
        # condition clears at t0+30 and the alert resolves at t0+32 (keep_firing_for 2s).
        fast = [(service, inference(service, 40.0, t0 + 30 + i)) for i in range(6)]
        await produce(broker.bootstrap, config.topics.inference, fast)

        resolved = await asyncio.to_thread(slack_recorder.wait_for, slack_about(alertname, "resolved"), 30)

        fired = transitions.of(AlertState.FIRING, service)
        assert len(fired) == 1, transitions.alerts
        assert fired[0].fired_at == pytest.approx(t0 + 4) and fired[0].active_at == pytest.approx(t0 + 2)
        assert [a.resolved_at for a in transitions.of(AlertState.RESOLVED, service)] == [pytest.approx(t0 + 32)]
        assert (
            app.metrics.registry.get_sample_value(
                "watchkeeper_alertmanager_sends_total", {"url": alertmanager.url, "outcome": "ok"}
            )
            >= 2
        )

    text = firing["attachments"][0]["text"]
    assert firing["channel"] == "#pages"
    assert f"labels: alertname={alertname} service={service} severity=page team=watchkeeper-it\n" in text
    assert f"limit=500 ms summary=mean latency of {service} is 900 ms\n" in text
    assert resolved["attachments"][0]["title"] == f"[RESOLVED] {alertname}"
    assert f"service={service}" in resolved["attachments"][0]["text"]
    # One page per state change: Alertmanager deduplicated nothing it should have sent twice.
    assert sum(slack_about(alertname, "firing")(m) for m in slack_recorder.messages) == 1
