"""``rollback`` through the whole remediation path: alerts topic -> remediator -> real MLflow -> audit topic.

The agent (a real ``AgentApp`` on the Tansu broker) reads scripted firing alerts from
its alerts topic, exactly as its own pipeline writes them, and rolls the model's alias
back in a real MLflow server. Helpers come from tests/integration/test_remediation.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from actions.alias_history import BAD_TAG
from actions.mlflow_registry import RegistryClient
from agent.model import Alert, AlertState, fingerprint
from agent.runtime.embedded_broker import EmbeddedBroker
from tests.integration.harness import eventually, unique_name
from tests.integration.test_remediation import (
    T0,
    audit_topic,
    config_for,
    decisions,
    metric,
    rules_file,
    running,
    send,
    wait_decisions,
)
from tests.mlflow_testbed import MlflowServer, model_with_versions
from tests.unit.actions.fake_kind import RecordingSystem

pytestmark = pytest.mark.integration


def _firing(alertname: str, model: str, version: str, active_at: float) -> Alert:
    labels = {"alertname": alertname, "service": "checkout", "model": model, "model_version": version, "severity": "page"}
    return Alert(fingerprint(labels), f"it/{alertname}", AlertState.FIRING, labels, {}, active_at, 900.0, fired_at=active_at + 60)


async def test_enforced_rollback_runs_once_per_incident_and_is_audited(
    broker: EmbeddedBroker, mlflow_server: MlflowServer, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    alertname, name = unique_name("WkRollback"), model_with_versions(mlflow_server.url)
    rules = rules_file(tmp_path, alertname, "[{type: rollback, mode: enforce, cooldown: 0, allowed: {patterns: ['fraud-[0-9a-f]{8}']}}]")
    config = config_for(broker, unique_topic, rules, actions_mode="enforce", mlflow_tracking_uri=mlflow_server.url)
    registry = RegistryClient(mlflow_server.url, "model")
    first = _firing(alertname, name, "3", T0)
    async with running(config, RecordingSystem()) as app:
        await send(broker, config, first, times=3)  # fired, then re-sent twice
        (executed,) = await wait_decisions(app, 1, "the rollback")
        await eventually(lambda: metric(app, "watchkeeper_action_duplicates_total") >= 2, timeout_s=30, what="re-sends")
        assert registry.alias_holder(name, "champion") == "2"

        # The next incident of the same series (it resolved, fired again on v2): one step further.
        await send(broker, config, _firing(alertname, name, "2", T0 + 600), times=2)
        records = await wait_decisions(app, 2, "the second rollback")
        assert registry.alias_holder(name, "champion") == "1"

    assert (executed.outcome, executed.target, executed.mode) == ("executed", f"model/{name}", "enforce")
    assert executed.before["version"] == "3" and executed.after["version"] == "2"
    assert [(r.outcome, r.after.get("version")) for r in records] == [("executed", "2"), ("executed", "1")]
    history = registry.history(name, "champion")
    assert [(m.version, m.key) for m in history[1:]] == [("2", records[0].decision_key), ("1", records[1].decision_key)]
    assert json.loads(registry.version_tags(name, "3")[BAD_TAG])["decision_key"] == records[0].decision_key
    assert [r.outcome for r in await audit_topic(broker, config)] == ["executed", "executed"]


async def test_dry_run_rollback_audits_the_plan_and_moves_nothing(
    broker: EmbeddedBroker, mlflow_server: MlflowServer, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    alertname, name = unique_name("WkRollbackDry"), model_with_versions(mlflow_server.url)
    rules = rules_file(tmp_path, alertname, "[{type: rollback, allowed: {patterns: ['fraud-[0-9a-f]{8}']}}]")  # no mode: dry-run
    config = config_for(broker, unique_topic, rules, actions_mode="enforce", mlflow_tracking_uri=mlflow_server.url)
    async with running(config, RecordingSystem()) as app:
        await send(broker, config, _firing(alertname, name, "3", T0))
        (record,) = await wait_decisions(app, 1, "the dry-run decision")
        assert decisions(app) == [record]
    assert (record.outcome, record.before["version"], record.after["version"]) == ("dry-run", "3", "2")
    registry = RegistryClient(mlflow_server.url, "model")
    assert registry.alias_holder(name, "champion") == "3"
    assert registry.history(name, "champion") == [] and BAD_TAG not in registry.version_tags(name, "3")
