"""Verify after act through the whole runtime on the real Tansu broker.

A real ``AgentApp``: events in, the pipeline's stamped alert snapshots on the alerts
topic, the remediation consumer's verdicts on the audit topic, and the
``WatchkeeperActionNotRecovered`` page delivered by the notifier like any alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from agent.model import AlertState
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.remediator import NOT_RECOVERED_ALERT
from tests.integration.harness import eventually, inference, unique_name
from tests.integration.test_remediation import (
    T0,
    RecordingSink,
    audit_topic,
    decisions,
    firing,
    metric,
    produce,
    recording_kind,
    running,
    scenario,
    send,
)

pytestmark = pytest.mark.integration

__all__ = ["recording_kind"]  # the fixture, imported for these tests


async def test_a_recovery_seen_in_the_events_is_recorded_as_recovered(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    _, config, system = scenario(
        broker, unique_topic, tmp_path, "WkVerifyOk", "[{type: recording, mode: enforce, verify_within: 2m, undo: true}]"
    )
    service = unique_name("api")
    async with running(config, system) as app:
        await produce(broker.bootstrap, config.topics.inference, [(service, inference(service, 900.0, T0 + i)) for i in range(6)])
        await eventually(lambda: len(system.applies) == 1, timeout_s=30, what="the action")
        # the action helped: fast events clear the condition 30 s of event time later
        fast = [(service, inference(service, 20.0, T0 + 20 + i)) for i in range(20)]
        await produce(broker.bootstrap, config.topics.inference, fast)
        await eventually(
            lambda: any(r.outcome == "recovered" for r in decisions(app)), timeout_s=30, what="the verdict",
            detail=lambda: "\n".join(f"{r.outcome} {r.reason}" for r in decisions(app)),
        )
        assert metric(app, "watchkeeper_action_verifications_total", action="recording", outcome="recovered") == 1
    records = await audit_topic(broker, config)
    assert [r.outcome for r in records] == ["executed", "recovered"]
    assert records[1].verify_of == records[0].id and system.undone == []


async def test_an_alert_still_firing_is_paged_and_the_action_undone(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(
        broker, unique_topic, tmp_path, "WkVerifyBad", "[{type: recording, mode: enforce, verify_within: 5m, undo: true}]"
    )
    sink = RecordingSink()
    alert = firing(alertname, "api")
    async with running(config, system, sink=sink) as app:
        await send(broker, config, replace(alert, at=T0 + 1, last_event_at=T0 + 1))
        await eventually(lambda: len(system.applies) == 1, timeout_s=30, what="the action")
        # re-sends, as the pipeline stamps them: inside the window, then past it
        await send(broker, config, replace(alert, at=T0 + 200, last_event_at=T0 + 199))
        await send(broker, config, replace(alert, at=T0 + 301, last_event_at=T0 + 300))
        await eventually(lambda: len(system.undone) == 1, timeout_s=30, what="the undo")
        await eventually(
            lambda: any(a.labels.get("alertname") == NOT_RECOVERED_ALERT for a in sink.all), timeout_s=30, what="the page"
        )
        assert metric(app, "watchkeeper_action_verifications_total", action="recording", outcome="not_recovered") == 1
    records = await audit_topic(broker, config)
    assert [r.outcome for r in records] == ["executed", "not_recovered", "executed"]
    executed, verdict, undo = records
    assert verdict.verify_of == executed.id and undo.undo_of == executed.id
    page = next(a for a in sink.all if a.labels.get("alertname") == NOT_RECOVERED_ALERT)
    assert page.state is AlertState.FIRING and page.labels["rule"] == f"it/{alertname}"
    assert page.labels["target"] == "deployment/api" and "not recovered by" in page.annotations["summary"]
