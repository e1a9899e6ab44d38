"""The remediator's decisions with an in-memory publish and the recording kind: fast, no broker.

The same behaviours run against the real broker in tests/integration/test_remediation.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from actions.audit import AuditRecord
from actions.base import ActionContext
from actions.local_lock import LocalLock
from actions.registry import ACTIONS
from agent.model import Alert, AlertState
from agent.rules import RuleSet, load_rules
from agent.runtime.remediator import AuditNotDurable, Remediator
from agent.runtime.selfmetrics import SelfMetrics
from tests.unit.actions.fake_kind import RecordingAction, RecordingSystem


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Topic:
    """The audit topic: records in order; ``fail`` makes the next publishes raise."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.fail = 0

    async def __call__(self, record: AuditRecord) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker unavailable")
        self.records.append(record)

    def outcomes(self) -> list[str]:
        return [r.outcome for r in self.records]


def rules_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str) -> RuleSet:
    monkeypatch.setitem(ACTIONS, "recording", RecordingAction)
    path = tmp_path / "r.yaml"
    path.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: Hot\n        source: inference\n        by: [service]\n"
        "        detector: {kind: threshold, field: latency_ms, op: '>', threshold: 500}\n"
        f"        actions:\n          - {{type: recording, {entry}}}\n"
    )
    return load_rules([path])


def alert(active_at: float = 1_799_999_000.0, service: str = "api") -> Alert:
    labels = {"alertname": "Hot", "service": service}
    return Alert(f"fp-{service}", "g/Hot", AlertState.FIRING, labels, {}, active_at, 900.0, fired_at=active_at, series=(service,))


class Setup:
    def __init__(self, rules: RuleSet, *, ceiling: str = "enforce", agent: str = "agent-a", **more: object) -> None:
        self.system = RecordingSystem()
        self.topic = Topic()
        self.clock = Clock()
        self.metrics = SelfMetrics()
        self.annotations: list[tuple[str, tuple[str, ...], dict[str, str]]] = []
        context = ActionContext(lock=LocalLock(), agent_id=agent, extra={"system": self.system})
        self.remediator = Remediator(
            rules=lambda: rules, context=context, publish=self.topic, metrics=self.metrics, ceiling=ceiling,
            backoff_s=0.001, annotate=lambda *a: self.annotations.append(a), registry={"recording": RecordingAction},
            clock=self.clock, **more,  # type: ignore[arg-type]
        )

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_dry_run_decides_once_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce"), ceiling="dry-run")
    for _ in range(3):  # the first firing, then two re-sends
        await s.remediator.handle([alert()])
    assert s.topic.outcomes() == ["dry-run"] and s.system.applies == []
    (record,) = s.topic.records
    assert record.mode == "dry-run" and record.after == {"changes": 1} and record.attempts == 0
    assert s.sample("watchkeeper_actions_total", action="recording", outcome="dry-run") == 1
    assert s.sample("watchkeeper_action_duplicates_total") == 2


async def test_transient_errors_are_retried_then_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce, fail_times: 2, retries: 3"))
    await s.remediator.handle([alert()])
    (record,) = s.topic.records
    assert (record.outcome, record.attempts, record.after) == ("executed", 3, {"changes": 1})
    assert [g.name for g in record.guards][-1] == "lease"
    assert s.remediator.context.lock.holder("deployment/api") is None  # type: ignore[union-attr]


async def test_retries_run_out_then_failed_with_metric_and_annotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce, fail_times: 9, retries: 2"))
    await s.remediator.handle([alert()])
    (record,) = s.topic.records
    assert (record.outcome, record.attempts) == ("failed", 3)
    assert "409 conflict" in record.reason and "after 3 attempts" in record.reason
    assert s.sample("watchkeeper_action_failures_total", action="recording") == 1
    assert s.annotations == [("g/Hot", ("api",), {"remediation_failed": f"recording on deployment/api: {record.reason}"})]


async def test_a_final_error_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce, final_error: true, retries: 5"))
    await s.remediator.handle([alert()])
    assert [(r.outcome, r.attempts, r.reason) for r in s.topic.records] == [("failed", 1, "refused: 403 forbidden")]


async def test_an_unresolvable_target_fails_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce"))
    bare = Alert("fp", "g/Hot", AlertState.FIRING, {"alertname": "Hot"}, {}, 1.0, math.nan)
    await s.remediator.handle([bare, bare])
    assert [(r.outcome, r.target) for r in s.topic.records] == [("failed", "unresolved/fp")]
    assert s.topic.records[0].reason == "no target: no service label on the alert and no service in the rule"
    assert s.sample("watchkeeper_action_failures_total", action="recording") == 1


async def test_a_lost_audit_record_is_redecided_as_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce"))
    s.topic.fail = 1  # the broker does not take the "executed" record: the batch is redelivered
    with pytest.raises(AuditNotDurable, match="broker unavailable"):
        await s.remediator.handle([alert()])
    assert len(s.system.applies) == 1 and s.topic.records == []
    await s.remediator.handle([alert()])
    assert s.topic.outcomes() == ["noop"] and len(s.system.applies) == 1


async def test_new_incident_is_held_by_cooldown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce, cooldown: 10m"))
    await s.remediator.handle([alert(active_at=1_799_999_000.0)])
    s.clock.now += 60
    await s.remediator.handle([alert(active_at=1_799_999_900.0)])
    assert s.topic.outcomes() == ["executed", "skipped"] and s.topic.records[1].guard == "cooldown"


async def test_approval_then_execution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: approve"))
    await s.remediator.handle([alert()])
    (request,) = s.topic.records
    assert (request.outcome, request.guard) == ("pending-approval", "approval")
    assert request.reason == f"change deployment/api: waiting for `watchkeeper actions approve {request.id[:12]}` (expires in 30m)"
    assert s.sample("watchkeeper_actions_pending_approval") == 1
    await s.remediator.sweep()
    assert len(s.topic.records) == 1  # nothing until someone answers
    answer = await s.remediator.answer(request.id[:10], by="alice", approve=True, reason="looks right")
    assert s.remediator.wake.is_set()
    await s.remediator.sweep()
    assert s.topic.outcomes() == ["pending-approval", "approved", "executed"]
    executed = s.topic.records[-1]
    assert executed.request_id == request.id == answer.request_id and executed.decision_key == request.decision_key
    assert "approved by alice" in {g.detail for g in executed.guards}
    assert len(s.system.applies) == 1
    await s.remediator.sweep()
    await s.remediator.handle([alert()])  # a re-send after all this
    assert len(s.topic.records) == 3 and s.sample("watchkeeper_actions_pending_approval") == 0
    with pytest.raises(LookupError):
        await s.remediator.answer(request.id, by="bob", approve=True)


async def test_rejection_and_expiry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: approve, approval_timeout: 5m"))
    await s.remediator.handle([alert(service="a"), alert(service="b")])
    first, second = s.topic.records
    await s.remediator.answer(first.id, by="bob", approve=False, reason="not now")
    s.clock.now += 299
    await s.remediator.sweep()
    assert s.topic.outcomes() == ["pending-approval", "pending-approval", "skipped"]
    s.clock.now += 2
    await s.remediator.sweep()
    expired = s.topic.records[-1]
    assert (expired.outcome, expired.guard, expired.request_id) == ("expired", "approval", second.id)
    assert s.system.applies == [] and s.remediator.ledger.pending == {}


async def test_another_agents_approved_request_is_taken_over_only_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = rules_with(tmp_path, monkeypatch, "mode: approve")
    asker = Setup(rules, agent="agent-a")
    await asker.remediator.handle([alert()])
    await asker.remediator.answer(asker.topic.records[0].id, by="alice", approve=True)
    other = Setup(rules, agent="agent-b", takeover_s=30.0)
    other.clock.now = asker.clock.now
    for record in asker.topic.records:  # agent-b reads them from the audit topic
        other.remediator.observe(record)
    await other.remediator.sweep()
    assert other.topic.records == []  # agent-a is expected to do it
    other.clock.now += 31
    await other.remediator.sweep()
    assert other.topic.outcomes() == ["executed"] and len(other.system.applies) == 1


class Rec:
    """The part of a Kafka record ``decode_firing`` reads."""

    def __init__(self, value: bytes, timestamp_ms: float) -> None:
        self.value, self.timestamp = value, int(timestamp_ms)


def test_decode_firing_keeps_fresh_firing_records_and_their_resends() -> None:
    import json

    from agent.runtime.remediation import decode_firing

    now = 1_800_000_000.0
    fire = json.dumps(alert().to_dict()).encode()
    resolved = json.dumps({**alert().to_dict(), "state": "resolved"}).encode()
    records = [
        Rec(fire, (now - 3600) * 1000),  # last hour's record: a new group must not act on it
        Rec(fire, (now - 5) * 1000),
        Rec(b"{not json", now * 1000),
        Rec(resolved, now * 1000),
        Rec(fire, now * 1000),  # a re-send: kept, the ledger recognises it
    ]
    assert [a.state for a in decode_firing(records, now=now)] == [AlertState.FIRING, AlertState.FIRING]


def test_action_context_from_config(tmp_path: Path) -> None:
    from agent.config import AgentConfig, KafkaConfig
    from agent.errors import ConfigError
    from agent.runtime.action_context import build_action_context

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        pass

    config = AgentConfig(kafka=KafkaConfig("k:9092"), rules=("r.yaml",), actions_namespaces=("prod",))
    env = {"WATCHKEEPER_AGENT_ID": "agent-7", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    context = build_action_context(config, publish, env=env)
    assert context.kube_api_client is None and isinstance(context.lock, LocalLock)
    assert (context.agent_id, context.mlflow_tracking_uri, context.namespaces) == ("agent-7", "http://mlflow:5000", frozenset({"prod"}))
    assert context.extra["env"] is env and context.publish is publish
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: a kubeconfig\n")
    with pytest.raises(ConfigError, match="Kubernetes configuration"):
        build_action_context(config, publish, env={"WATCHKEEPER_KUBECONFIG": str(bad)})


def test_with_a_kubeconfig_the_lock_is_a_lease_in_the_contexts_namespace(tmp_path: Path) -> None:
    from actions.lease import KubeLeaseLock
    from agent.config import AgentConfig, KafkaConfig
    from agent.runtime.action_context import build_action_context

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: wk\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: wk, context: {cluster: c, user: u, namespace: watchkeeper}}]\n"
    )

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        pass

    config = AgentConfig(kafka=KafkaConfig("k:9092"), rules=("r.yaml",), kubeconfig=str(kubeconfig))
    context = build_action_context(config, publish, env={})
    assert context.kube_api_client is not None and context.kube_api_client.configuration.host == "https://127.0.0.1:6443"
    assert isinstance(context.lock, KubeLeaseLock) and context.lock.namespace == "watchkeeper"


def test_bad_action_settings_name_their_variable() -> None:
    from agent.config import AgentConfig, KafkaConfig, Topics
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="WATCHKEEPER_ACTIONS_MODE"):
        AgentConfig(kafka=KafkaConfig("k:9092"), rules=("r.yaml",), actions_mode="yolo")
    with pytest.raises(ConfigError, match="WATCHKEEPER_ACTIONS_MAX_PER_HOUR"):
        AgentConfig(kafka=KafkaConfig("k:9092"), rules=("r.yaml",), actions_max_per_hour=-1)
    with pytest.raises(ConfigError, match="distinct"):
        Topics(audit="watchkeeper.alerts")
    assert Topics().all()[-2:] == ("watchkeeper.audit", "watchkeeper.retrain")


class FlakyLock(LocalLock):
    """A Lease whose writes fail ``fail`` times first (an API server answering 500)."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail

    async def acquire(self, key: str, holder: str, ttl_s: float) -> bool:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("500 Internal Server Error")
        return await super().acquire(key, holder, ttl_s)


async def test_a_failing_lease_write_is_retried_then_the_action_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce, retries: 3"))
    s.remediator.context.lock = FlakyLock(fail=2)
    await s.remediator.handle([alert()])
    (record,) = s.topic.records
    assert record.outcome == "executed" and s.system.applies
    assert [g.name for g in record.guards][-1] == "lease" and record.guards[-1].ok


async def test_a_lease_that_never_comes_fails_without_acting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(rules_with(tmp_path, monkeypatch, "mode: enforce, retries: 1"))
    s.remediator.context.lock = FlakyLock(fail=9)
    await s.remediator.handle([alert()])
    (record,) = s.topic.records
    assert (record.outcome, s.system.applies) == ("failed", [])
    assert "could not take the lease" in record.reason and not record.guards[-1].ok
    assert s.sample("watchkeeper_action_failures_total", action="recording") == 1


def _rollback_rules(tmp_path: Path, mode: str) -> RuleSet:
    path = tmp_path / "rollback.yaml"
    path.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: Hot\n        source: inference\n        by: [service, model, model_version]\n"
        "        detector: {kind: threshold, field: latency_ms, op: '>', threshold: 500}\n"
        f"        actions:\n          - {{type: rollback, mode: {mode}, allowed: {{names: [fraud]}}}}\n"
    )
    return load_rules([path])


@pytest.mark.parametrize(("mode", "ceiling", "outcome"), [("dry-run", "dry-run", "dry-run"), ("enforce", "enforce", "failed")])
async def test_without_a_registry_dry_run_still_decides_and_enforce_fails(tmp_path: Path, mode: str, ceiling: str, outcome: str) -> None:
    # no WATCHKEEPER_MLFLOW_TRACKING_URI: a new rule can be tried in dry-run before its target is wired
    topic = Topic()
    remediator = Remediator(
        rules=lambda: _rollback_rules(tmp_path, mode), context=ActionContext(lock=LocalLock()), publish=topic,
        metrics=SelfMetrics(), ceiling=ceiling, backoff_s=0.001, registry={"rollback": ACTIONS["rollback"]}, clock=Clock(),
    )
    labels = {"alertname": "Hot", "service": "api", "model": "fraud", "model_version": "3"}
    await remediator.handle([Alert("fp", "g/Hot", AlertState.FIRING, labels, {}, 1_799_999_000.0, 900.0, series=("api", "fraud", "3"))])
    (record,) = topic.records
    assert (record.outcome, record.target) == (outcome, "model/fraud")
    assert "no MLflow tracking URI" in record.reason
