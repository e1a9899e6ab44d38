"""A flood of invented service names through the real broker cannot silence a learned series.

The agent learns one service for a while (its series is proven), then a producer floods
the inference topic with invented service names, ten times the series budget. The flood
is refused places (counted per source) instead of evicting the learned series, and when
the learned service then really degrades, its page reaches Slack through Alertmanager.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import SeriesLimits
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

MAX_SERIES = 20


async def test_flood_of_invented_services_is_refused_and_the_learned_service_still_pages(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    alertname = unique_name("WkFlood")
    service = unique_name("checkout")
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(alertname, threshold=500, window_s=10, min_count=3))
    config = agent_config(
        broker.bootstrap, unique_topic, rules, max_series=MAX_SERIES, series_limits=SeriesLimits(proven_s=20)
    )
    metrics = SelfMetrics()
    transitions = Transitions()
    t0 = time.time() - 240  # event time, a few minutes back

    async with (
        AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
        running_agent(config, client, metrics=metrics, on_transition=transitions) as app,
    ):
        # a minute of a healthy service: a proven series; then fill the budget with other
        # proven services, so the flood finds only series it may not evict
        healthy = [(service, inference(service, 40.0, t0 + i)) for i in range(60)]
        others = [(f"steady-{k}", inference(f"steady-{k}", 40.0, t0 + i)) for i in (0, 59) for k in range(MAX_SERIES - 1)]
        await produce(broker.bootstrap, config.topics.inference, healthy + others)
        await eventually(lambda: len(app.pipeline.engine) == MAX_SERIES, timeout_s=30, what="the learned series")
        learned = app.pipeline.engine.series((f"it/{alertname}", (service,)))
        assert learned is not None

        flood = [(f"bogus-{i}", inference(f"bogus-{i}", 40.0, t0 + 60)) for i in range(10 * MAX_SERIES)]
        await produce(broker.bootstrap, config.topics.inference, flood)
        await eventually(
            lambda: sample(metrics.registry, "watchkeeper_series_refused_total", {"source": "inference"}) >= 10 * MAX_SERIES,
            timeout_s=30,
            what="the flood's series refused",
            detail=lambda: f"engine holds {len(app.pipeline.engine)} series",
        )
        assert app.pipeline.engine.series((f"it/{alertname}", (service,))) is learned

        slow = [(service, inference(service, 900.0, t0 + 61 + i)) for i in range(6)]
        await produce(broker.bootstrap, config.topics.inference, slow)
        await asyncio.to_thread(slack_recorder.wait_for, slack_about(alertname, "firing"), 30)

        assert [a.labels["service"] for a in transitions.of(AlertState.FIRING)] == [service]
        assert len(app.pipeline.engine) == MAX_SERIES
        assert sample(metrics.registry, "watchkeeper_events_total", {"source": "inference", "outcome": "processed"}) >= 60 + 200
