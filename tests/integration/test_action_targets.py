"""Forged alerts against the real Kubernetes API server and the real MLflow server: refused, zero requests.

The agent is set up as the issue describes it: enforce mode, ``WATCHKEEPER_ACTIONS_NAMESPACES``
= one namespace. Alerts whose labels a producer forged name ``kube-system`` or invalid
names (``../x``, upper case, 300 characters, ``a/b``), or a model of another team. Every
Kubernetes request the agent makes goes through a client that records it (and then
really sends it), so "no request" is observed, not assumed; the objects the forger
aimed at are read back unchanged, the model's alias too, and every decision is on the
audit as ``skipped`` by the guard that refused. A control alert with honest labels, in
the same run, does reach the server and act, so the recording is known to work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actions.base import ActionContext
from actions.local_lock import LocalLock
from actions.mlflow_registry import RegistryClient
from actions.registry import ACTIONS
from agent.model import Alert, AlertState, fingerprint
from agent.rules import RuleSet, load_rules
from agent.runtime.remediator import Remediator
from agent.runtime.selfmetrics import SelfMetrics
from tests.k8s_testbed import KubeCluster, deployment_manifest, wait_until
from tests.mlflow_testbed import MlflowServer, model_with_versions
from tests.unit.actions.recording_kube import RecordingApiClient
from tests.unit.actions.test_remediator import Clock, Topic

pytestmark = pytest.mark.integration

FORGED = ["kube-system", "../x", "Web", "a" * 300, "a/b"]
"""Label values a forger sends: a namespace outside the allow-list, and names Kubernetes refuses."""


def _rules(tmp_path: Path, actions: str) -> RuleSet:
    path = tmp_path / "forged.yaml"
    path.write_text(
        "groups:\n  - name: it\n    rules:\n      - alert: Hot\n        source: inference\n"
        "        by: [service, model, model_version]\n"
        "        detector: {kind: threshold, field: latency_ms, op: '>', threshold: 500}\n"
        f"        actions:\n{actions}"
    )
    return load_rules([path])


def _alert(**labels: str) -> Alert:
    labels = {"alertname": "Hot", **labels}
    return Alert(fingerprint(labels), "it/Hot", AlertState.FIRING, labels, {}, 1_799_999_000.0, 900.0)


class Agent:
    """The remediator, enforce mode, one allowed namespace, every Kubernetes request recorded."""

    def __init__(self, kube: KubeCluster, rules: RuleSet, allowed: str, mlflow_uri: str | None = None) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kube.admin_kubeconfig), client_configuration=configuration)
        self.api = RecordingApiClient(configuration, forward=True)
        self.topic = Topic()
        self.metrics = SelfMetrics()
        context = ActionContext(
            kube_api_client=self.api, mlflow_tracking_uri=mlflow_uri, namespaces=frozenset({allowed}),
            lock=LocalLock(), agent_id="wk-forged",
        )
        self.remediator = Remediator(
            rules=lambda: rules, context=context, publish=self.topic, metrics=self.metrics, ceiling="enforce",
            backoff_s=0.01, registry=ACTIONS, clock=Clock(),
        )

    def close(self) -> None:
        self.api.close()


@pytest.fixture
def admin(kube: KubeCluster) -> Iterator[Any]:
    with kube.api_client() as api:
        yield api


@pytest.fixture
def allowed(kube: KubeCluster, admin: Any) -> str:
    """The one namespace in the allow-list, with a Deployment ``web`` the control alert scales."""
    from kubernetes import client

    namespace = kube.create_namespace(f"wk-ok-{uuid.uuid4().hex[:8]}")
    apps = client.AppsV1Api(admin)
    apps.create_namespaced_deployment(namespace, deployment_manifest("web", 2))
    wait_until(lambda: apps.read_namespaced_deployment("web", namespace).status.updated_replicas == 2, what="web reconciled")
    return namespace


@pytest.fixture
def victim(kube: KubeCluster, admin: Any) -> Iterator[str]:
    """A Deployment in ``kube-system`` that a forger wants scaled or restarted."""
    from kubernetes import client

    name = f"victim-{uuid.uuid4().hex[:8]}"
    apps = client.AppsV1Api(admin)
    apps.create_namespaced_deployment("kube-system", deployment_manifest(name, 1))
    wait_until(lambda: apps.read_namespaced_deployment(name, "kube-system").status.updated_replicas == 1, what="victim reconciled")
    yield name
    client.AppsV1Api(admin).delete_namespaced_deployment(name, "kube-system")


def _state(admin: Any, name: str) -> tuple[int, dict[str, str], dict[str, str], int]:
    """What an action would change: generation (bumped by any spec or annotation write), annotations, replicas."""
    from kubernetes import client

    dep = client.AppsV1Api(admin).read_namespaced_deployment(name, "kube-system")
    template = dict(dep.spec.template.metadata.annotations or {})
    return int(dep.metadata.generation), dict(dep.metadata.annotations or {}), template, int(dep.spec.replicas)


def _forged_alerts(victim: str, allowed: str, labels: dict[str, str]) -> list[tuple[Alert, str]]:
    """(alert, the guard that must refuse it): kube-system, then each invalid name as namespace and as Deployment."""
    alerts = [(_alert(namespace="kube-system", deployment=victim, service=victim, **labels), "namespace")]
    for value in FORGED[1:]:
        alerts.append((_alert(namespace=value, deployment="web", service="web", **labels), "kube-name"))
        alerts.append((_alert(namespace=allowed, deployment=value, service=value, **labels), "kube-name"))
    return alerts


async def test_forged_scale_targets_make_zero_requests(
    kube: KubeCluster, admin: Any, allowed: str, victim: str, tmp_path: Path
) -> None:
    agent = Agent(kube, _rules(tmp_path, "          - {type: scale, mode: enforce, step: 2, max_replicas: 6}\n"), allowed)
    before = _state(admin, victim)
    try:
        forged = _forged_alerts(victim, allowed, {"model": "fraud"})
        await agent.remediator.handle([a for a, _ in forged])
        assert agent.api.requests == [], "a forged target must cost zero requests, reads included"
        got = [(r.fingerprint, r.outcome, r.guard) for r in agent.topic.records]
        assert got == [(a.fingerprint, "skipped", guard) for a, guard in forged], [r.reason for r in agent.topic.records]
        refused = agent.metrics.registry.get_sample_value
        assert refused("watchkeeper_action_targets_refused_total", {"action": "scale", "guard": "namespace"}) == 1
        assert refused("watchkeeper_action_targets_refused_total", {"action": "scale", "guard": "kube-name"}) == len(forged) - 1

        # The control: honest labels reach the server, in the allowed namespace only, and act.
        await agent.remediator.handle([_alert(namespace=allowed, deployment="web", service="web", model="fraud")])
        assert agent.api.requests and all(f"/namespaces/{allowed}/" in path for _, path in agent.api.requests)
        assert [(r.outcome, r.target) for r in agent.topic.records[len(forged):]] == [("executed", f"deployment/{allowed}/web")]
    finally:
        agent.close()
    assert _state(admin, victim) == before


async def test_forged_retrain_job_namespaces_make_zero_requests(kube: KubeCluster, admin: Any, allowed: str, tmp_path: Path) -> None:
    from kubernetes import client

    entry = (
        "          - type: retrain\n            via: job\n            mode: enforce\n"
        "            namespace: '{{ $labels.namespace }}'\n"
        "            job_template: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i}]}}}}\n"
    )
    agent = Agent(kube, _rules(tmp_path, entry), allowed)
    jobs_before = len(client.BatchV1Api(admin).list_namespaced_job("kube-system").items)
    try:
        await agent.remediator.handle([_alert(namespace=value, service="web", model="fraud") for value in FORGED])
        assert agent.api.requests == []
        assert [(r.outcome, r.guard) for r in agent.topic.records] == [("skipped", "namespace")] + [
            ("skipped", "kube-name")
        ] * (len(FORGED) - 1)
    finally:
        agent.close()
    assert len(client.BatchV1Api(admin).list_namespaced_job("kube-system").items) == jobs_before


async def test_forged_rollback_restart_target_is_refused_before_mlflow_or_kubernetes(
    kube: KubeCluster, admin: Any, allowed: str, victim: str, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """The issue's case: the rollback's restart target named kube-system; the alias must not move either."""
    model = model_with_versions(mlflow_server.url)
    actions = (
        "          - type: rollback\n            mode: enforce\n            allowed: {patterns: ['fraud-[0-9a-f]{8}']}\n"
        "            restart: {namespace: '{{ $labels.namespace }}', deployment: '{{ $labels.service }}'}\n"
    )
    agent = Agent(kube, _rules(tmp_path, actions), allowed, mlflow_server.url)
    before = _state(admin, victim)
    registry = RegistryClient(mlflow_server.url, "model")
    try:
        forged = _forged_alerts(victim, allowed, {"model": model, "model_version": "3"})
        await agent.remediator.handle([a for a, _ in forged])
        assert agent.api.requests == []
        got = [(r.outcome, r.guard) for r in agent.topic.records]
        assert got == [("skipped", guard) for _, guard in forged], [r.reason for r in agent.topic.records]
    finally:
        agent.close()
    assert _state(admin, victim) == before
    assert registry.alias_holder(model, "champion") == "3"
    assert registry.history(model, "champion") == []


def _model_named(url: str, name: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    client.create_registered_model(name)
    for i in range(1, 4):
        client.create_model_version(name, source=f"s3://models/{name}/{i}")
    client.set_registered_model_alias(name, "champion", "3")
    return name


async def test_rollback_of_another_teams_model_is_refused_audited_and_its_alias_untouched(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    url = mlflow_server.url
    ours = model_with_versions(url)
    theirs = _model_named(url, f"payments-{uuid.uuid4().hex[:8]}")
    rules = _rules(tmp_path, "          - {type: rollback, mode: enforce, allowed: {patterns: ['fraud-[0-9a-f]{8}']}}\n")
    topic, metrics = Topic(), SelfMetrics()
    remediator = Remediator(
        rules=lambda: rules,
        context=ActionContext(mlflow_tracking_uri=url, lock=LocalLock(), agent_id="wk-forged"),
        publish=topic, metrics=metrics, ceiling="enforce", backoff_s=0.01, registry=ACTIONS, clock=Clock(),
    )
    registry = RegistryClient(url, "model")
    await remediator.handle([_alert(service="checkout", model=theirs, model_version="3")])
    (refused,) = topic.records
    assert (refused.outcome, refused.guard) == ("skipped", "allowed-names"), refused.reason
    assert theirs in refused.reason and refused.guards[0].name == "allowed-names" and not refused.guards[0].ok
    assert registry.alias_holder(theirs, "champion") == "3"
    assert registry.history(theirs, "champion") == [] and "watchkeeper.bad" not in registry.version_tags(theirs, "3")
    assert metrics.registry.get_sample_value(
        "watchkeeper_action_targets_refused_total", {"action": "rollback", "guard": "allowed-names"}
    ) == 1

    # the control: a model the rule names is rolled back by the same agent
    await remediator.handle([_alert(service="checkout", model=ours, model_version="3")])
    assert [r.outcome for r in topic.records] == ["skipped", "executed"]
    assert registry.alias_holder(ours, "champion") == "2"
