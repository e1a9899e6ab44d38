"""Remediation end to end against the real Tansu broker: alerts topic in, audit topic out.

Each test runs a real ``AgentApp`` (its own topics and consumer groups). Alerts reach the
remediator the way production ones do, as records on the alerts topic: produced by the
agent's own pipeline from events (dry-run, failure annotation) or, to script incidents
exactly, written to the alerts topic directly in the agent's format. The action kind
is ``recording`` (tests/unit/actions/fake_kind.py), added to the registry for one test;
``notify`` posts to a real local HTTP server.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from actions.audit import AuditRecord
from actions.local_lock import LocalLock
from actions.registry import ACTIONS
from agent.actions_cli import answer
from agent.cli import app as cli_app
from agent.config import AgentConfig
from agent.model import Alert, AlertState, fingerprint
from agent.runtime.app import AgentApp
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.notifier import TerminalSink
from agent.runtime.selfmetrics import SelfMetrics
from agent.runtime.signing import TopicRole
from agent.runtime.topic_keys import open_keys
from tests.integration.harness import agent_config, eventually, inference, sample, unique_name
from tests.kafka_tools import consume, produce
from tests.signed_records import produce_with_headers, signed_headers
from tests.testbed import SlackRecorder
from tests.unit.actions.fake_kind import RecordingAction, RecordingSystem

pytestmark = pytest.mark.integration

T0 = time.time() - 600  # event time of the scripted incidents


@pytest.fixture
def recording_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test kind, registered for this test only (rule files naming it load)."""
    monkeypatch.setitem(ACTIONS, "recording", RecordingAction)


def rules_file(tmp_path: Path, alertname: str, actions: str) -> Path:
    """A mean-latency rule per service with ``actions`` (a YAML flow list)."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        f"""\
groups:
  - name: it
    rules:
      - alert: {alertname}
        source: inference
        by: [service]
        detector: {{kind: threshold, field: latency_ms, agg: mean, window_s: 10s, op: ">", threshold: 500, min_count: 3}}
        labels: {{severity: page}}
        annotations: {{summary: 'mean latency of {{{{ $labels.service }}}} is high'}}
        actions: {actions}
"""
    )
    return path


def config_for(broker: EmbeddedBroker, unique_topic: Callable[[str], str], rules: Path, **more: Any) -> AgentConfig:
    config = agent_config(broker.bootstrap, unique_topic, rules, actions_backoff_s=0.05, **more)
    return replace(config, topics=replace(config.topics, audit=unique_topic("audit"), retrain=unique_topic("retrain")))


def scenario(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, prefix: str, actions: str, **settings: Any
) -> tuple[str, AgentConfig, RecordingSystem]:
    """A fresh alert name, its rule with ``actions``, an agent config (ceiling enforce) and a system."""
    alertname = unique_name(prefix)
    rules = rules_file(tmp_path, alertname, actions)
    config = config_for(broker, unique_topic, rules, **{"actions_mode": "enforce", **settings})
    return alertname, config, RecordingSystem()


class RecordingSink(TerminalSink):
    """Accepts every alert (like a healthy Alertmanager) and keeps them."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.all: list[Alert] = []

    async def deliver(self, alerts: Any, *, stop: asyncio.Event | None = None) -> bool:
        self.all.extend(alerts)
        return await super().deliver(alerts, stop=stop)


@asynccontextmanager
async def running(
    config: AgentConfig, system: RecordingSystem, *, serve_http: bool = False, sink: RecordingSink | None = None
) -> AsyncIterator[AgentApp]:
    app = AgentApp(config, sink or RecordingSink(), metrics=SelfMetrics(), serve_http=serve_http)
    app.remediation.context.extra["system"] = system
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def firing(alertname: str, service: str, active_at: float = T0) -> Alert:
    labels = {"alertname": alertname, "service": service, "severity": "page"}
    return Alert(
        fingerprint(labels), f"it/{alertname}", AlertState.FIRING, labels, {"summary": f"{service} is slow"},
        active_at, 900.0, fired_at=active_at + 1, series=(service,),
    )


async def send(broker: EmbeddedBroker, config: AgentConfig, alert: Alert, times: int = 1) -> None:
    """What the agent's pipeline (or its re-send loop) writes to the alerts topic: signed with its key file."""
    value, key = json.dumps(alert.to_dict()).encode(), alert.fingerprint.encode()
    headers = signed_headers(open_keys(config.topic_keys_file), TopicRole.ALERTS, key, value)
    await produce_with_headers(broker.bootstrap, config.topics.alerts, [(key, value, headers)] * times)


async def audit_topic(broker: EmbeddedBroker, config: AgentConfig) -> list[AuditRecord]:
    records = await consume(broker.bootstrap, config.topics.audit, timeout_s=10)
    return sorted((AuditRecord.from_json(r.value) for r in records), key=lambda r: r.ts)


def decisions(app: AgentApp) -> list[AuditRecord]:
    return list(app.remediation.remediator.ledger.recent)


async def wait_decisions(app: AgentApp, n: int, what: str, timeout_s: float = 30) -> list[AuditRecord]:
    await eventually(
        lambda: len(decisions(app)) >= n, timeout_s=timeout_s, what=what,
        detail=lambda: "\n".join(f"{r.outcome} {r.guard} {r.reason}" for r in decisions(app)),
    )
    return decisions(app)


def metric(app: AgentApp, name: str, **labels: str) -> float:
    return sample(app.metrics.registry, name, labels)


# --- dry-run, idempotency, restarts -------------------------------------------------------
async def test_dry_run_of_a_firing_alert_is_one_audit_record_and_changes_nothing(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    # a new rule sets no mode: dry-run, even under an agent ceiling of enforce
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkDryRun", "[{type: recording}]", resend_interval_s=0.3)
    service = unique_name("api")
    async with running(config, system) as app:
        await produce(broker.bootstrap, config.topics.inference, [(service, inference(service, 900.0, T0 + i)) for i in range(6)])
        (record,) = await wait_decisions(app, 1, "the dry-run decision")
        # the firing alert is re-sent every 0.3 s: each re-send is recognised, none decided again
        await eventually(lambda: metric(app, "watchkeeper_action_duplicates_total") >= 3, timeout_s=30, what="re-sends")
        assert metric(app, "watchkeeper_actions_total", action="recording", outcome="dry-run") == 1
    assert (record.outcome, record.mode, record.guard) == ("dry-run", "dry-run", None)
    assert (record.alertname, record.target, record.labels["service"]) == (alertname, f"deployment/{service}", service)
    assert record.before == {"changes": 0} and record.after == {"changes": 1}
    assert record.guards[0].detail == "dry-run: the rule sets no mode (agent ceiling enforce)"
    assert [g.name for g in record.guards][:2] == ["mode", "idempotency"]
    assert system.applies == [] and system.marks == {}
    on_topic = await audit_topic(broker, config)
    assert [r.id for r in on_topic] == [record.id]
    assert on_topic[0].to_dict() == record.to_dict()


async def test_enforce_executes_once_through_resends_and_a_restart(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkOnce", "[{type: recording, mode: enforce}]")
    alert = firing(alertname, "api")
    async with running(config, system) as first:
        await send(broker, config, alert)
        (executed,) = await wait_decisions(first, 1, "the execution")
        await send(broker, config, alert, times=5)
        await eventually(lambda: metric(first, "watchkeeper_action_duplicates_total") >= 5, timeout_s=30, what="5 re-sends seen")
        await send(broker, config, alert, times=2)  # in flight while the agent stops
    async with running(config, system) as second:  # same group, ledger rebuilt from the audit topic
        await send(broker, config, alert, times=5)
        await eventually(lambda: metric(second, "watchkeeper_action_duplicates_total") >= 5, timeout_s=30, what="re-sends after restart")
        assert [r.id for r in decisions(second)] == [executed.id]  # the rebuilt ledger, nothing new
    assert (executed.outcome, executed.attempts, executed.mode) == ("executed", 1, "enforce")
    assert executed.after == {"changes": 1} and [g.name for g in executed.guards][-1] == "lease"
    assert system.applies == [(executed.decision_key, "deployment/api")]
    assert [r.outcome for r in await audit_topic(broker, config)] == ["executed"]


async def test_a_crash_between_the_change_and_its_audit_record_is_not_repeated(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkCrash", "[{type: recording, mode: enforce, hang_after_apply: true}]")
    async with running(config, system) as first:
        await send(broker, config, firing(alertname, "api"))
        await eventually(lambda: len(system.applies) == 1, timeout_s=30, what="the change")
        stopping = asyncio.create_task(first.stop())  # dies mid-action: no audit record, offsets not committed
        await stopping
        assert decisions(first) == []
    async with running(config, system) as second:
        (record,) = await wait_decisions(second, 1, "the redelivered alert's decision")
    assert record.outcome == "noop" and record.reason == "already changed for this alert"
    assert len(system.applies) == 1


async def test_two_agents_seeing_the_same_alert_act_once(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    # Two agents in different groups both consume the alert; they share the audit topic and
    # the target's lock (a Lease in production), and the target carries its mark.
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkTwo", "[{type: recording, mode: enforce, apply_s: 0.5}]")
    other = replace(config, kafka=replace(config.kafka, group_id=unique_name("wk-it-other")), agent_id="agent-b")
    lock = LocalLock()
    async with running(replace(config, agent_id="agent-a"), system) as a, running(other, system) as b:
        a.remediation.context.lock = b.remediation.context.lock = lock
        await send(broker, config, firing(alertname, "api"))
        await eventually(
            lambda: len(system.applies) == 1 and len(decisions(a)) >= 1 and len(decisions(b)) >= 1,
            timeout_s=30, what="both agents' view of the decision",
        )
        await asyncio.sleep(1.0)  # room for a second, wrong, execution
        seen = {r.id: r for r in decisions(a) + decisions(b)}
    outcomes = sorted(r.outcome for r in seen.values())
    assert len(system.applies) == 1
    assert outcomes.count("executed") == 1
    assert set(outcomes) <= {"executed", "noop", "skipped"}
    assert all(r.guard == "lease" for r in seen.values() if r.outcome == "skipped")


# --- guards that block ----------------------------------------------------------------------
GUARD_CASES = {
    # name: (action entry, agent settings, incidents as (service, minutes after T0), expected outcomes)
    "cooldown": ("{type: recording, mode: enforce, cooldown: 10m}", {}, [("api", 0), ("api", 5)], [("executed", None), ("skipped", "cooldown")]),
    "budget-target": (
        "{type: recording, mode: enforce, cooldown: 0, max_per_hour: 1}", {}, [("api", 0), ("api", 5)],
        [("executed", None), ("skipped", "budget-target")],
    ),
    "budget-fleet": (
        "{type: recording, mode: enforce, cooldown: 0}", {"actions_max_per_hour": 1}, [("api", 0), ("web", 0)],
        [("executed", None), ("skipped", "budget-fleet")],
    ),
    "mode-ceiling": ("{type: recording, mode: enforce}", {"actions_mode": "dry-run"}, [("api", 0)], [("dry-run", None)]),
    "namespace": (
        "{type: recording, mode: enforce, namespace: prod}", {"actions_namespaces": ("staging",)}, [("api", 0)],
        [("skipped", "namespace")],
    ),
    "blast-radius": ("{type: recording, mode: enforce, blocked: blast-radius}", {}, [("api", 0)], [("skipped", "blast-radius")]),
}


@pytest.mark.parametrize("case", sorted(GUARD_CASES))
async def test_guard_blocks(
    case: str, broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    entry, settings, incidents, expected = GUARD_CASES[case]
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkGuard", f"[{entry}]", **settings)
    async with running(config, system) as app:
        for i, (service, minutes) in enumerate(incidents):
            await send(broker, config, firing(alertname, service, T0 + 60 * minutes))
            await wait_decisions(app, i + 1, f"decision {i + 1}")
        records = decisions(app)
    assert [(r.outcome, r.guard) for r in records] == expected
    blocked = records[-1]
    refused = [g for g in blocked.guards if not g.ok]
    if blocked.outcome == "skipped":
        assert refused[0].name == blocked.guard and blocked.reason == refused[0].detail
    else:
        assert "ceiling is dry-run" in blocked.guards[0].detail
    assert len(system.applies) == sum(1 for outcome, _ in expected if outcome == "executed")


# --- approvals ------------------------------------------------------------------------------
async def test_approve_with_the_cli_then_the_agent_executes(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkApprove", "[{type: recording, mode: approve}]")
    cli = ["--kafka-bootstrap", broker.bootstrap, "--topic-audit", config.topics.audit, "--topic-keys-file", str(config.topic_keys_file)]
    async with running(config, system) as app:
        await send(broker, config, firing(alertname, "api"))
        (request,) = await wait_decisions(app, 1, "the request")
        assert (request.outcome, request.guard, system.applies) == ("pending-approval", "approval", [])
        listed = await asyncio.to_thread(CliRunner().invoke, cli_app, ["actions", "list", "--pending", "--json", *cli])
        assert listed.exit_code == 0, listed.output
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [request.id]

        approval = await answer(
            broker.bootstrap, config.topics.audit, request.id[:12], by="alice", approve=True, reason="ok", keys=open_keys(config.topic_keys_file)
        )
        records = await wait_decisions(app, 3, "the approval and the execution")
        again = await asyncio.to_thread(CliRunner().invoke, cli_app, ["actions", "approve", request.id, *cli])
        table = await asyncio.to_thread(CliRunner().invoke, cli_app, ["actions", "list", *cli])
    assert [(r.outcome, r.request_id) for r in records] == [("pending-approval", None), ("approved", request.id), ("executed", request.id)]
    assert approval.id == records[1].id and records[1].agent == "alice"
    assert system.applies == [(request.decision_key, "deployment/api")]
    assert again.exit_code == 1 and "no pending request" in again.output
    assert table.exit_code == 0 and "executed" in table.output and "Pending approval (0):" in table.output


async def test_approve_and_reject_over_http(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(
        broker, unique_topic, tmp_path, "WkHttp", "[{type: recording, mode: approve}]", actions_approve_token="s3cret-0123456789abcdef"
    )
    async with running(config, system, serve_http=True) as app:
        assert app.http is not None
        base = f"http://127.0.0.1:{app.http.port}"
        await send(broker, config, firing(alertname, "api"))
        await send(broker, config, firing(alertname, "web"))
        await wait_decisions(app, 2, "two requests")
        auth = {"authorization": "Bearer s3cret-0123456789abcdef"}
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/actions")).status_code == 401
            listing = (await http.get("/actions", params={"pending": "1"}, headers=auth)).json()
            pending = {r["target"]: r["id"] for r in listing["pending"]}
            assert set(pending) == {"deployment/api", "deployment/web"} and "recent" not in listing
            assert (await http.post(f"/actions/{pending['deployment/api']}/approve")).status_code == 401
            approved = await http.post(f"/actions/{pending['deployment/api']}/approve", json={"by": "carol"}, headers=auth)
            rejected = await http.post(f"/actions/{pending['deployment/web']}/reject", json={"reason": "no"}, headers=auth)
            missing = await http.post("/actions/0123456789ab/approve", headers=auth)
            records = await wait_decisions(app, 5, "two answers and one execution")
            recent = (await http.get("/actions", headers=auth)).json()["recent"]
    assert approved.status_code == 200 and approved.json()["outcome"] == "approved"
    assert approved.json()["agent"] == "approve-token"  # the shorthand token's name, not the claimed "carol"
    assert rejected.status_code == 200 and (rejected.json()["outcome"], rejected.json()["guard"]) == ("skipped", "approval")
    assert missing.status_code == 404
    assert sorted((r.target, r.outcome) for r in records[2:]) == [
        ("deployment/api", "approved"), ("deployment/api", "executed"), ("deployment/web", "skipped"),
    ]
    assert [k for k, t in system.applies] == [records[0].decision_key if records[0].target == "deployment/api" else records[1].decision_key]
    assert recent[0]["id"] == records[-1].id


async def test_an_http_approval_records_the_token_owner_not_a_claimed_name(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    approvers = tmp_path / "approvers"
    approvers.write_text("alice: alice-token-0123456789abcdef\nbob: bob-token-0123456789abcdef\nviewer: {token: read-0123456789abcdef, role: read}\n")
    approvers.chmod(0o600)
    alertname, config, system = scenario(
        broker, unique_topic, tmp_path, "WkWho", "[{type: recording, mode: approve}]", approvers_file=str(approvers)
    )
    async with running(config, system, serve_http=True) as app:
        assert app.http is not None
        await send(broker, config, firing(alertname, "api"))
        (request,) = await wait_decisions(app, 1, "the request")
        alice = {"authorization": "Bearer alice-token-0123456789abcdef"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
            viewer = {"authorization": "Bearer read-0123456789abcdef"}
            assert [p["id"] for p in (await http.get("/actions", headers=viewer)).json()["pending"]] == [request.id]
            assert (await http.post(f"/actions/{request.id}/approve", json={"by": "bob"}, headers=viewer)).status_code == 403
            forged = await http.post(
                f"/actions/{request.id}/approve", json={"by": "bob"}, headers={**alice, "x-forwarded-user": "bob"}
            )
            records = await wait_decisions(app, 3, "the approval and the execution")
    assert forged.status_code == 200 and forged.json()["agent"] == "alice"
    assert [(r.outcome, r.agent) for r in records[1:2]] == [("approved", "alice")]
    durable = [r for r in await audit_topic(broker, config) if r.outcome == "approved"]
    assert [r.agent for r in durable] == ["alice"]
    assert system.applies == [(request.decision_key, "deployment/api")]


async def test_an_unanswered_request_expires(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkExpire", "[{type: recording, mode: approve, approval_timeout: 1s}]")
    async with running(config, system) as app:
        await send(broker, config, firing(alertname, "api"))
        records = await wait_decisions(app, 2, "the request and its expiry")
        with pytest.raises(Exception, match="no pending request"):
            await answer(broker.bootstrap, config.topics.audit, records[0].id, by="late", approve=True, keys=open_keys(config.topic_keys_file))
    assert [(r.outcome, r.guard) for r in records] == [("pending-approval", "approval"), ("expired", "approval")]
    assert records[1].request_id == records[0].id and records[1].ts - records[0].ts >= 1.0
    assert system.applies == []


# --- failures -------------------------------------------------------------------------------
async def test_transient_failures_are_retried_then_failed_reported_and_annotated(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkFail", "[{type: recording, mode: enforce, fail_times: 99, retries: 2}]", resend_interval_s=0.3)
    service = unique_name("api")
    sink = RecordingSink()
    async with running(config, system, sink=sink) as app:
        await produce(broker.bootstrap, config.topics.inference, [(service, inference(service, 900.0, T0 + i)) for i in range(6)])
        (record,) = await wait_decisions(app, 1, "the failure")
        # the alert's next re-send carries the failure for the people it pages
        await eventually(
            lambda: any("remediation_failed" in a.annotations for a in sink.all), timeout_s=30, what="the annotated re-send"
        )
        failures = metric(app, "watchkeeper_action_failures_total", action="recording")
        failed = metric(app, "watchkeeper_actions_total", action="recording", outcome="failed")
        duration_count = metric(app, "watchkeeper_action_duration_seconds_count", action="recording")
    assert (record.outcome, record.attempts) == ("failed", 3)
    assert "409 conflict (try 3)" in record.reason
    assert (failures, failed, duration_count) == (1, 1, 1)
    assert sum(system.attempts.values()) == 3 and system.applies == []
    annotated = next(a for a in sink.all if "remediation_failed" in a.annotations)
    assert annotated.annotations["remediation_failed"].startswith(f"recording on deployment/{service}: 409 conflict")


async def test_notify_posts_to_the_webhook_named_by_an_environment_variable(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, slack_recorder: SlackRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WK_IT_REMEDIATION_HOOK", slack_recorder.url)
    entry = '[{type: notify, url_env: WK_IT_REMEDIATION_HOOK, mode: enforce, channel: "#remediation"}]'
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkNotify", entry)
    async with running(config, system) as app:
        await send(broker, config, firing(alertname, "api"))
        (record,) = await wait_decisions(app, 1, "the notification")
        await send(broker, config, firing(alertname, "api"), times=2)
        message = await asyncio.to_thread(slack_recorder.wait_for, lambda m: alertname in m.get("text", ""), 10)
        await eventually(lambda: metric(app, "watchkeeper_action_duplicates_total") >= 2, timeout_s=30, what="re-sends")
    assert (record.outcome, record.after) == ("executed", {"webhook": "WK_IT_REMEDIATION_HOOK", "status": 200})
    assert "hook" not in record.target.lower() or "WK_IT_REMEDIATION_HOOK" in record.target  # the name, never the URL
    assert slack_recorder.url not in json.dumps(record.to_dict())
    assert message["channel"] == "#remediation"
    assert message["text"].startswith(f"[FIRING] {alertname} {{service=api, severity=page}}")
    assert sum(alertname in m.get("text", "") for m in slack_recorder.messages) == 1
