"""``scale`` through the whole runtime path on a real Kubernetes control plane, with least privilege.

Two real agents (``AgentApp`` on the Tansu broker, two consumer groups, so both see the
alert) are configured as production would be: ``WATCHKEEPER_KUBECONFIG`` pointing at the
ServiceAccount of deploy/kubernetes/base/rbac.yaml, so the action context, its Lease lock
and the scale action all run with exactly the Role's verbs. The Deployment is scaled
once, within its limits, and the audit topic says so once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.lease import KubeLeaseLock
from agent.model import Alert, AlertState, fingerprint
from agent.runtime.embedded_broker import EmbeddedBroker
from tests.integration.harness import eventually, unique_name
from tests.integration.test_kube_rbac import rbac_documents
from tests.integration.test_remediation import T0, audit_topic, config_for, decisions, rules_file, running, send
from tests.k8s_testbed import KubeCluster, deployment_manifest, wait_until
from tests.unit.actions.fake_kind import RecordingSystem

pytestmark = pytest.mark.integration


def _firing(alertname: str, namespace: str, deployment: str) -> Alert:
    labels = {"alertname": alertname, "namespace": namespace, "deployment": deployment, "service": deployment}
    return Alert(fingerprint(labels), f"it/{alertname}", AlertState.FIRING, labels, {}, T0, 900.0, fired_at=T0 + 30)


async def test_two_agents_scale_a_deployment_once_with_the_least_privileged_service_account(
    broker: EmbeddedBroker, kube: KubeCluster, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    from kubernetes import client

    namespace = kube.create_namespace(f"wk-rem-{uuid.uuid4().hex[:8]}")
    kube.apply(rbac_documents(namespace), namespace)
    kubeconfig = kube.service_account_kubeconfig(namespace, "watchkeeper")
    with kube.api_client() as admin:
        apps = client.AppsV1Api(admin)
        apps.create_namespaced_deployment(namespace, deployment_manifest("api", 2))
        wait_until(lambda: apps.read_namespaced_deployment("api", namespace).status.updated_replicas == 2, what="api reconciled")

        alertname = unique_name("WkScale")
        rules = rules_file(tmp_path, alertname, "[{type: scale, mode: enforce, step: 2, max_replicas: 6, max_step: 2}]")
        base = config_for(
            broker, unique_topic, rules, actions_mode="enforce", kubeconfig=str(kubeconfig), actions_namespaces=(namespace,)
        )
        second = replace(base, kafka=replace(base.kafka, group_id=unique_name("wk-it-b")), agent_id="agent-b")
        async with running(replace(base, agent_id="agent-a"), RecordingSystem()) as a, running(second, RecordingSystem()) as b:
            for app in (a, b):
                assert isinstance(app.remediation.context.lock, KubeLeaseLock)
                assert app.remediation.context.lock.namespace == namespace  # the kubeconfig context's
            alert = _firing(alertname, namespace, "api")
            await send(broker, base, alert)
            await eventually(lambda: decisions(a) and decisions(b), timeout_s=60, what="both agents' decisions")
            await send(broker, base, alert, times=3)  # re-sent while it fires
            await asyncio.sleep(2.0)
            replicas = await asyncio.to_thread(lambda: apps.read_namespaced_deployment_scale("api", namespace).spec.replicas)
            seen: dict[str, Any] = {r.id: r for r in decisions(a) + decisions(b)}
        deployment = apps.read_namespaced_deployment("api", namespace)

    records = await audit_topic(broker, base)
    assert {r.id for r in records} == set(seen)
    executed = [r for r in records if r.outcome == "executed"]
    assert len(executed) == 1, [(r.agent, r.outcome, r.guard, r.reason) for r in records]
    assert all(r.outcome in ("noop", "skipped") for r in records if r is not executed[0])
    assert all(r.guard == "lease" for r in records if r.outcome == "skipped")
    record = executed[0]
    assert record.target == f"deployment/{namespace}/api"
    assert (record.before.get("replicas"), record.after.get("replicas")) == (2, 4)
    assert next(g for g in record.guards if g.name == "lease").ok
    assert replicas == 4
    annotations = deployment.metadata.annotations or {}
    assert record.decision_key in annotations.values()  # the mark a crashed agent would find
