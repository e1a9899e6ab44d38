"""Label values never steer an action outside its allow-lists: refused before any request, audited, counted.

Fast: the real action kinds (scale, rollback, retrain) run inside the real remediator,
with a Kubernetes client that records every request and forwards none, and an MLflow
URI nothing listens on. The same forged alerts against the real API server and the
real MLflow server are in tests/integration/test_action_targets.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actions.base import ActionContext
from actions.local_lock import LocalLock
from actions.registry import ACTIONS
from agent.model import Alert, AlertState
from agent.rules import RuleSet, load_rules
from agent.runtime.remediator import Remediator
from agent.runtime.selfmetrics import SelfMetrics
from tests.unit.actions.recording_kube import RecordingApiClient
from tests.unit.actions.test_remediator import Clock, Topic

HOSTILE_NAMES = ["kube-system", "../x", "Web", "UPPER", "a" * 300, "a/b", "-web", "web-", "a..b", "web\n", "wéb", "a b"]
"""Label values a forger could send; ``kube-system`` is valid but outside the allow-list."""


def _rules(tmp_path: Path, actions: str) -> RuleSet:
    path = tmp_path / "r.yaml"
    path.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: Hot\n        source: inference\n"
        "        by: [service, model, model_version]\n"
        "        detector: {kind: threshold, field: latency_ms, op: '>', threshold: 500}\n"
        f"        actions:\n{actions}"
    )
    return load_rules([path])


def _forged(**labels: str) -> Alert:
    labels = {"alertname": "Hot", "service": "web", "namespace": "ml-serving", "deployment": "web", "model": "fraud", **labels}
    return Alert(f"fp-{sorted(labels.items())}", "g/Hot", AlertState.FIRING, labels, {}, 1_799_999_000.0, 900.0)


class Agent:
    """The remediator in enforce mode, allowed only ``ml-serving``, watching every Kubernetes request."""

    def __init__(self, rules: RuleSet, publish: Any = None) -> None:
        self.api = RecordingApiClient(forward=False)
        self.topic = Topic()
        self.metrics = SelfMetrics()
        context = ActionContext(
            kube_api_client=self.api,
            publish=publish,
            mlflow_tracking_uri="http://127.0.0.1:9",  # nothing there: any MLflow call would fail the decision
            namespaces=frozenset({"ml-serving"}),
            lock=LocalLock(),
            agent_id="wk-unit",
        )
        self.remediator = Remediator(
            rules=lambda: rules, context=context, publish=self.topic, metrics=self.metrics, ceiling="enforce",
            backoff_s=0.001, registry=ACTIONS, clock=Clock(),
        )

    def refused(self, action: str, guard: str) -> float:
        labels = {"action": action, "guard": guard}
        return self.metrics.registry.get_sample_value("watchkeeper_action_targets_refused_total", labels) or 0.0


@pytest.mark.parametrize("value", HOSTILE_NAMES)
@pytest.mark.parametrize("label", ["namespace", "deployment"])
async def test_scale_with_a_forged_target_makes_no_request_and_is_audited(tmp_path: Path, label: str, value: str) -> None:
    if label == "deployment" and value == "kube-system":
        pytest.skip("a valid Deployment name: allowed in ml-serving")
    agent = Agent(_rules(tmp_path, "          - {type: scale, mode: enforce, step: 2}\n"))
    await agent.remediator.handle([_forged(**{label: value})])
    assert agent.api.requests == [], "a refused target must cost zero requests, reads included"
    (record,) = agent.topic.records
    guard = "namespace" if value == "kube-system" else "kube-name"
    assert (record.outcome, record.guard) == ("skipped", guard), record.reason
    assert record.guards and not record.guards[0].ok and record.guards[0].name == guard
    assert agent.refused("scale", guard) == 1


@pytest.mark.parametrize("value", HOSTILE_NAMES)
@pytest.mark.parametrize("label", ["namespace", "service"])
async def test_rollback_restart_target_is_checked_before_any_registry_or_api_call(
    tmp_path: Path, label: str, value: str
) -> None:
    if label == "service" and value == "kube-system":
        pytest.skip("a valid Deployment name: allowed in ml-serving")
    entry = (
        "          - type: rollback\n            mode: enforce\n            allowed: {names: [fraud]}\n"
        "            restart: {namespace: '{{ $labels.namespace }}', deployment: '{{ $labels.service }}'}\n"
    )
    agent = Agent(_rules(tmp_path, entry))
    await agent.remediator.handle([_forged(**{label: value})])
    assert agent.api.requests == []
    (record,) = agent.topic.records
    guard = "namespace" if value == "kube-system" else "kube-name"
    assert (record.outcome, record.guard) == ("skipped", guard), record.reason
    assert "MLflow" not in record.reason  # refused before the registry was asked anything
    assert agent.refused("rollback", guard) == 1


@pytest.mark.parametrize("model", ["payments-scorer", "fraud2", "FRAUD", "x-fraud", "fraud\n", "a" * 300])
async def test_rollback_of_a_model_outside_the_allow_list_is_refused_and_audited(tmp_path: Path, model: str) -> None:
    entry = "          - {type: rollback, mode: enforce, allowed: {names: [fraud], patterns: ['fraud-[a-z]+']}}\n"
    agent = Agent(_rules(tmp_path, entry))
    await agent.remediator.handle([_forged(model=model)])
    (record,) = agent.topic.records
    assert (record.outcome, record.guard) in {("skipped", "allowed-names"), ("skipped", "registry-name")}, record.reason
    assert agent.refused("rollback", str(record.guard)) == 1


async def test_retrain_job_in_a_forged_namespace_makes_no_request(tmp_path: Path) -> None:
    entry = (
        "          - type: retrain\n            via: job\n            mode: enforce\n"
        "            namespace: '{{ $labels.namespace }}'\n"
        "            job_template: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i}]}}}}\n"
    )
    agent = Agent(_rules(tmp_path, entry))
    await agent.remediator.handle([_forged(namespace="kube-system"), _forged(namespace="../etc")])
    assert agent.api.requests == []
    assert [(r.outcome, r.guard) for r in agent.topic.records] == [("skipped", "namespace"), ("skipped", "kube-name")]


async def test_an_allowed_target_does_reach_the_api(tmp_path: Path) -> None:
    """The control: the same agent and rule with honest labels do ask the API server (here: refused by the fake)."""
    agent = Agent(_rules(tmp_path, "          - {type: scale, mode: enforce, step: 2, retries: 0}\n"))
    await agent.remediator.handle([_forged()])
    assert agent.api.requests and all("/namespaces/ml-serving/" in path for _, path in agent.api.requests)
    (record,) = agent.topic.records
    assert record.outcome == "failed"  # the recording client answers 599


def test_a_rollback_without_an_allow_list_fails_rules_check_with_its_line(tmp_path: Path) -> None:
    from agent.errors import RuleError

    with pytest.raises(RuleError) as raised:
        _rules(tmp_path, "          - {type: rollback, mode: enforce}\n")
    assert "r.yaml:9:" in str(raised.value) and "allowed" in str(raised.value)
    with pytest.raises(RuleError, match="not a valid RE2 pattern"):
        _rules(tmp_path, "          - {type: rollback, allowed: {patterns: ['(unclosed']}}\n")
    with pytest.raises(RuleError, match="at least one of names or patterns"):
        _rules(tmp_path, "          - {type: rollback, allowed: {}}\n")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_every_namespace_the_scope_accepts_is_a_dns_label_in_the_allow_list(value: str) -> None:
    from actions.base import TargetRefused
    from actions.kube_target import KubeScope

    scope = KubeScope(None, {"ml-serving", value})
    try:
        checked = scope.namespace(value)
    except TargetRefused:
        return
    name = checked.name
    assert name == value and 1 <= len(name) <= 63
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and name[0] != "-" and name[-1] != "-"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_every_object_name_accepted_is_a_dns_subdomain(value: str) -> None:
    from actions.base import TargetRefused
    from actions.kube_target import KubeScope

    where = KubeScope(None, None).namespace("ml-serving")
    try:
        checked = where.object("deployment", value)
    except TargetRefused:
        return
    assert 1 <= len(checked.name) <= 253
    for part in checked.name.split("."):
        assert part and set(part) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and part[0] != "-" and part[-1] != "-"


def test_checked_targets_cannot_be_made_around_the_factory() -> None:
    from actions.kube_target import KubeNamespace, KubeScope, KubeTarget

    scope = KubeScope(None, {"ml-serving"})
    with pytest.raises(TypeError):
        KubeNamespace("kube-system", scope)
    with pytest.raises(TypeError):
        KubeTarget(scope.namespace("ml-serving"), "deployment", "web")
    with pytest.raises(TypeError):
        KubeTarget("kube-system", "deployment", "web")  # type: ignore[arg-type]
    from actions.base import TargetRefused

    checked = scope.namespace("ml-serving")
    with pytest.raises(TargetRefused):
        dataclasses.replace(checked, name="kube-system")
    with pytest.raises(TargetRefused):
        dataclasses.replace(checked.object("deployment", "web"), name="../x")


def test_no_action_module_calls_the_kubernetes_api_around_the_checked_wrappers() -> None:
    """Structural: only the wrappers that take a KubeTarget/KubeNamespace build API objects."""
    import re

    root = Path(__file__).resolve().parents[3] / "actions"
    wrappers = {"kube.py", "kube_hpa.py", "kube_jobs.py", "lease.py"}
    api = re.compile(r"\b(?:AppsV1Api|AutoscalingV\w*Api|BatchV1Api|CoordinationV1Api|CoreV1Api|CustomObjectsApi|ApiClient)\s*\(")
    offenders = [p.name for p in root.glob("*.py") if p.name not in wrappers and api.search(p.read_text())]
    assert offenders == []


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True),
    st.lists(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4),
)
def test_every_valid_name_in_an_allowed_namespace_is_accepted(namespace: str, parts: list[str]) -> None:
    """The other direction: the checks refuse nothing Kubernetes itself would accept (within the allow-list)."""
    from actions.kube_target import KubeScope

    name = ".".join(parts)  # at most 4 x 22 + 3 characters: always a DNS-1123 subdomain
    target = KubeScope(None, {namespace}).namespace(namespace).object("deployment", name)
    assert (target.ns, target.name, target.kind) == (namespace, name, "deployment")


async def test_retrain_with_allowed_models_refuses_others_before_publishing(tmp_path: Path) -> None:
    published: list[tuple[str, bytes, bytes]] = []

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        published.append((topic, key, value))

    rules = _rules(tmp_path, "          - {type: retrain, mode: enforce, allowed: {patterns: ['fraud(-[a-z]+)?']}}\n")
    agent = Agent(rules, publish)
    await agent.remediator.handle([_forged(model="payments"), _forged(model="fraud-eu")])
    assert [(r.outcome, r.guard) for r in agent.topic.records] == [("skipped", "allowed-names"), ("executed", None)]
    assert [key for _, key, _ in published] == [b"fraud-eu"]


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_without_an_allow_list_kubernetes_own_namespaces_stay_closed(namespace: str) -> None:
    from actions.base import TargetRefused
    from actions.kube_target import KubeScope

    with pytest.raises(TargetRefused, match="system namespace") as refused:
        KubeScope(None, None).namespace(namespace)
    assert refused.value.guard == "namespace"
    assert KubeScope(None, None).namespace("ml-serving").name == "ml-serving"
    assert KubeScope(None, {namespace}).namespace(namespace).name == namespace  # listed by name: allowed
