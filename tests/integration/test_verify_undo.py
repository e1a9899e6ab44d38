"""Verify after act and undo against the real Kubernetes API server and the real MLflow server.

The remediator runs with the shipped ``scale`` and ``rollback`` kinds and a real action
context; the alert snapshots it verifies against are fed in as the remediation consumer
feeds them (stamped with event time ``at`` and the series' ``last_event_at``, as the
pipeline stamps them). An action that works is ``recovered``; one whose target keeps
failing (the alert stays firing) is ``not_recovered``, paged, undone (replicas back,
alias back), and the undo is verified in turn; a quiet series is ``inconclusive`` and
nothing is undone.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.alias_history import BAD_TAG
from actions.audit import AuditRecord
from actions.base import ActionContext
from actions.local_lock import LocalLock
from actions.mlflow_registry import RegistryClient
from actions.verify import Verifier
from agent.model import Alert, AlertState, fingerprint
from agent.rules import load_rules
from agent.runtime.remediator import NOT_RECOVERED_ALERT, Remediator
from agent.runtime.selfmetrics import SelfMetrics
from tests.mlflow_testbed import MlflowServer, model_with_versions

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0


class Topic:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def __call__(self, record: AuditRecord) -> None:
        self.records.append(record)

    def outcomes(self) -> list[str]:
        return [r.outcome for r in self.records]


class Pages:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def __call__(self, alert: Alert) -> None:
        self.sent.append(alert)


def _rules(tmp_path: Path, entry: str) -> Any:
    path = tmp_path / f"r-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        "groups:\n  - name: it\n    rules:\n      - alert: Broken\n        source: inference\n"
        "        by: [service]\n"
        "        detector: {kind: threshold, field: latency_ms, op: '>', threshold: 500}\n"
        f"        actions:\n          - {entry}\n"
    )
    return load_rules([path])


def _remediator(rules: Any, context: ActionContext) -> tuple[Remediator, Topic, Pages, SelfMetrics]:
    topic, pages, metrics = Topic(), Pages(), SelfMetrics()
    remediator = Remediator(
        rules=lambda: rules, context=context, publish=topic, metrics=metrics, ceiling="enforce",
        backoff_s=0.01, page=pages, verifier=Verifier(quiet_s=300.0),
    )
    return remediator, topic, pages, metrics


def _firing(labels: Mapping[str, str]) -> Alert:
    full = {"alertname": "Broken", **labels}
    series = tuple(full.get(k, "") for k in ("service", "namespace", "deployment", "model", "model_version"))
    return Alert(fingerprint(full), "it/Broken", AlertState.FIRING, full, {}, T0 - 60, 900.0, fired_at=T0, series=series)


def _snap(alert: Alert, at: float, last_event_at: float, state: AlertState = AlertState.FIRING) -> Alert:
    resolved_at = at if state is AlertState.RESOLVED else None
    return replace(alert, state=state, at=at, last_event_at=last_event_at, resolved_at=resolved_at)


def _replicas(kube: Any, namespace: str, name: str) -> int:
    from kubernetes import client

    with kube.api_client() as api:
        return int(client.AppsV1Api(api).read_namespaced_deployment_scale(name, namespace).spec.replicas)


def _kube_setup(kube: Any, tmp_path: Path, entry: str) -> tuple[str, Any]:
    from kubernetes import client

    from tests.k8s_testbed import deployment_manifest, wait_until

    namespace = kube.create_namespace(f"wk-verify-{uuid.uuid4().hex[:8]}")
    kube.apply([deployment_manifest("api", 2)], namespace)
    with kube.api_client() as api:
        apps = client.AppsV1Api(api)
        wait_until(lambda: apps.read_namespaced_deployment("api", namespace).status.updated_replicas == 2, what="api reconciled")
    return namespace, _rules(tmp_path, entry)


_SCALE = "{type: scale, mode: enforce, step: 2, max_replicas: 6, max_step: 2, verify_within: 5m, undo: true}"


async def test_a_scale_that_works_is_recovered_and_stays(kube: Any, tmp_path: Path) -> None:
    namespace, rules = _kube_setup(kube, tmp_path, _SCALE)
    with kube.api_client() as api:
        remediator, topic, pages, metrics = _remediator(rules, ActionContext(kube_api_client=api, namespaces=frozenset({namespace}), lock=LocalLock()))
        alert = _firing({"service": "api", "namespace": namespace, "deployment": "api"})
        await remediator.handle([alert])
        assert _replicas(kube, namespace, "api") == 4
        await remediator.verify([_snap(alert, T0 + 60, T0 + 59), _snap(alert, T0 + 180, T0 + 180, AlertState.RESOLVED)])
    assert topic.outcomes() == ["executed", "recovered"], [r.reason for r in topic.records]
    assert topic.records[1].verify_of == topic.records[0].id
    assert _replicas(kube, namespace, "api") == 4 and pages.sent == []
    assert metrics.registry.get_sample_value("watchkeeper_action_verifications_total", {"action": "scale", "outcome": "recovered"}) == 1


async def test_a_scale_that_does_not_help_is_undone_and_the_undo_verified(kube: Any, tmp_path: Path) -> None:
    from kubernetes import client

    from actions.kube import LAST_ACTION

    namespace, rules = _kube_setup(kube, tmp_path, _SCALE)
    with kube.api_client() as api:
        remediator, topic, pages, _ = _remediator(rules, ActionContext(kube_api_client=api, namespaces=frozenset({namespace}), lock=LocalLock()))
        alert = _firing({"service": "api", "namespace": namespace, "deployment": "api"})
        await remediator.handle([alert])
        assert _replicas(kube, namespace, "api") == 4
        await remediator.verify([_snap(alert, T0 + 120, T0 + 119), _snap(alert, T0 + 300, T0 + 299)])
        assert topic.outcomes() == ["executed", "not_recovered", "executed"], [r.reason for r in topic.records]
        undo = topic.records[2]
        assert undo.undo_of == topic.records[0].id
        assert (undo.before.get("replicas"), undo.after.get("replicas")) == (4, 2)
        assert _replicas(kube, namespace, "api") == 2
        mark = client.AppsV1Api(api).read_namespaced_deployment("api", namespace).metadata.annotations[LAST_ACTION]
        assert mark == undo.decision_key  # a re-run of the undo finds its mark: a noop, never twice
        # the undo is verified: still firing, so paged again; never undone
        await remediator.verify([_snap(alert, T0 + 600, T0 + 599), _snap(alert, T0 + 900, T0 + 899)])
    assert topic.outcomes() == ["executed", "not_recovered", "executed", "not_recovered"]
    assert topic.records[3].verify_of == undo.id
    assert _replicas(kube, namespace, "api") == 2
    assert [p.labels["alertname"] for p in pages.sent] == [NOT_RECOVERED_ALERT] * 2
    assert pages.sent[0].labels["target"] == f"deployment/{namespace}/api"
    assert "scaled api 2 -> 4" in pages.sent[0].annotations["summary"]


async def test_a_quiet_series_is_inconclusive_and_the_scale_stays(kube: Any, tmp_path: Path) -> None:
    namespace, rules = _kube_setup(kube, tmp_path, _SCALE)
    with kube.api_client() as api:
        remediator, topic, pages, _ = _remediator(rules, ActionContext(kube_api_client=api, namespaces=frozenset({namespace}), lock=LocalLock()))
        alert = _firing({"service": "api", "namespace": namespace, "deployment": "api"})
        await remediator.handle([alert])
        await remediator.verify([_snap(alert, T0 + 400, T0 - 10)])  # no event since the action
    assert topic.outcomes() == ["executed", "inconclusive"]
    assert _replicas(kube, namespace, "api") == 4 and pages.sent == []


async def test_an_undo_refused_by_the_namespace_allow_list_changes_nothing(kube: Any, tmp_path: Path) -> None:
    namespace, rules = _kube_setup(kube, tmp_path, _SCALE)
    with kube.api_client() as api:
        remediator, topic, _, _ = _remediator(rules, ActionContext(kube_api_client=api, namespaces=frozenset({namespace}), lock=LocalLock()))
        alert = _firing({"service": "api", "namespace": namespace, "deployment": "api"})
        await remediator.handle([alert])
        remediator.context.namespaces = frozenset({"elsewhere"})  # the allow-list narrowed since
        await remediator.verify([_snap(alert, T0 + 300, T0 + 299)])
    assert topic.outcomes() == ["executed", "not_recovered", "skipped"]
    assert topic.records[2].guard == "namespace" and topic.records[2].undo_of == topic.records[0].id
    assert _replicas(kube, namespace, "api") == 4


def _rollback_entry() -> str:
    return (
        "{type: rollback, mode: enforce, allowed: {patterns: ['fraud-[0-9a-f]{8}']}, verify_within: 10m, undo: true}"
    )


async def test_a_rollback_that_works_is_recovered(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    url = mlflow_server.url
    name = model_with_versions(url)
    remediator, topic, _, _ = _remediator(_rules(tmp_path, _rollback_entry()), ActionContext(mlflow_tracking_uri=url, lock=LocalLock()))
    alert = _firing({"service": "scorer", "model": name, "model_version": "3"})
    await remediator.handle([alert])
    await remediator.verify([_snap(alert, T0 + 240, T0 + 240, AlertState.RESOLVED)])
    assert topic.outcomes() == ["executed", "recovered"], [r.reason for r in topic.records]
    assert RegistryClient(url, "model").alias_holder(name, "champion") == "2"


async def test_a_rollback_that_does_not_help_is_undone_and_the_undo_verified(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    url = mlflow_server.url
    name = model_with_versions(url)
    registry = RegistryClient(url, "model")
    remediator, topic, pages, _ = _remediator(_rules(tmp_path, _rollback_entry()), ActionContext(mlflow_tracking_uri=url, lock=LocalLock()))
    alert = _firing({"service": "scorer", "model": name, "model_version": "3"})
    await remediator.handle([alert])
    assert registry.alias_holder(name, "champion") == "2" and registry.version_tags(name, "3").get(BAD_TAG)
    await remediator.verify([_snap(alert, T0 + 600, T0 + 590)])
    assert topic.outcomes() == ["executed", "not_recovered", "executed"], [r.reason for r in topic.records]
    undo = topic.records[2]
    assert undo.undo_of == topic.records[0].id and undo.after["version"] == "3"
    assert registry.alias_holder(name, "champion") == "3"
    assert not registry.version_tags(name, "3").get(BAD_TAG)  # the rollback's blame is withdrawn
    history = registry.history(name, "champion")
    assert [m.version for m in history][-2:] == ["2", "3"] and history[-1].key == undo.decision_key
    # the undo, re-planned (a redelivery after a crash), is a noop; and it is verified, never undone
    await remediator.verify([_snap(alert, T0 + 1200, T0 + 1190)])
    assert topic.outcomes() == ["executed", "not_recovered", "executed", "not_recovered"]
    assert registry.alias_holder(name, "champion") == "3" and len(pages.sent) == 2
    assert "rolled back" in pages.sent[0].annotations["summary"] and "3 -> 2" in pages.sent[0].annotations["summary"]


async def test_a_rollback_with_low_traffic_is_inconclusive_and_stays(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    url = mlflow_server.url
    name = model_with_versions(url)
    remediator, topic, pages, _ = _remediator(_rules(tmp_path, _rollback_entry()), ActionContext(mlflow_tracking_uri=url, lock=LocalLock()))
    alert = _firing({"service": "scorer", "model": name, "model_version": "3"})
    await remediator.handle([alert])
    await remediator.verify([_snap(alert, T0 + 700, T0 - 1)])
    assert topic.outcomes() == ["executed", "inconclusive"] and pages.sent == []
    assert RegistryClient(url, "model").alias_holder(name, "champion") == "2"
