"""Least privilege, proven: with deploy/kubernetes/base/rbac.yaml's ServiceAccount the actions work, and nothing else does.

The manifests are applied to a fresh namespace of the real control plane, the agent
authenticates with the ServiceAccount's own token (from the Secret 1.20's token
controller fills), and every Kubernetes action runs through that identity.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions.base import ActionContext, ActionFailed
from actions.kube import restart_deployment
from actions.lease import KubeLeaseLock
from actions.retrain import Retrain
from actions.scale import Scale
from agent.model import Alert, AlertState
from tests.k8s_testbed import KubeCluster, deployment_manifest, wait_until

pytestmark = pytest.mark.integration

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "base" / "rbac.yaml"


def rbac_documents(namespace: str) -> list[dict[str, Any]]:
    """rbac.yaml as kustomize would render it with ``namespace:`` set."""
    documents = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    for doc in documents:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
    return documents


@pytest.fixture(scope="module")
def bound(kube: KubeCluster) -> Iterator[tuple[str, Any, Any]]:
    """(namespace, admin client, agent client): the agent's Role bound in a fresh namespace."""
    from kubernetes import client

    namespace = kube.create_namespace(f"rbac-{uuid.uuid4().hex[:8]}")
    kube.apply(rbac_documents(namespace), namespace)
    kubeconfig = kube.service_account_kubeconfig(namespace, "watchkeeper")
    with kube.api_client() as admin, kube.api_client(kubeconfig) as agent:
        apps = client.AppsV1Api(admin)
        for name in ("web", "api"):
            apps.create_namespaced_deployment(namespace, deployment_manifest(name, 2))
            wait_until(
                lambda n=name: apps.read_namespaced_deployment(n, namespace).status.updated_replicas == 2,
                what=f"{name} reconciled",
            )
        client.AutoscalingV1Api(admin).create_namespaced_horizontal_pod_autoscaler(
            namespace,
            {
                "metadata": {"name": "api"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                    "minReplicas": 2,
                    "maxReplicas": 8,
                },
            },
        )
        yield namespace, admin, agent


def firing(namespace: str, deployment: str, **labels: str) -> Alert:
    return Alert(
        fingerprint=f"fp-{deployment}",
        rule_id="r",
        state=AlertState.FIRING,
        labels={"alertname": "A", "namespace": namespace, "deployment": deployment, **labels},
        annotations={},
        active_at=100.0,
        value=1.0,
    )


def test_the_agent_authenticates_as_its_service_account(bound: tuple[str, Any, Any]) -> None:
    from kubernetes import client

    namespace, _, agent = bound
    review = client.AuthorizationV1Api(agent).create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": "patch",
                    "group": "apps",
                    "resource": "deployments",
                    "subresource": "scale",
                }
            }
        }
    )
    assert review.status.allowed


async def test_every_kubernetes_action_works_with_exactly_the_role(bound: tuple[str, Any, Any]) -> None:
    from kubernetes import client

    namespace, admin, agent = bound
    context = ActionContext(kube_api_client=agent, agent_id="rbac-test")

    scale = Scale(Scale.Params.model_validate({"type": "scale", "step": 1}), context)
    for deployment in ("web", "api"):  # "api" has an HPA
        alert = firing(namespace, deployment)
        plan = await scale.plan(alert, scale.target(alert))
        assert plan.blocked is None and not plan.noop, plan.reason
        await scale.apply(plan, alert)
        assert (await scale.plan(alert, scale.target(alert))).noop
    assert client.AppsV1Api(admin).read_namespaced_deployment("web", namespace).spec.replicas == 3
    assert client.AutoscalingV1Api(admin).read_namespaced_horizontal_pod_autoscaler("api", namespace).spec.min_replicas == 3

    template = {
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "registry.invalid/t:1"}]}}}
    }
    retrain = Retrain(
        Retrain.Params.model_validate({"type": "retrain", "via": "job", "namespace": namespace, "job_template": template}),
        context,
    )
    alert = firing(namespace, "web", model="fraud")
    plan = await retrain.plan(alert, retrain.target(alert))
    assert (await retrain.apply(plan, alert))["created"]
    assert not (await retrain.apply(plan, alert))["created"]  # the 409 path reads the Job back: "get"
    assert (await retrain.plan(alert, retrain.target(alert))).noop  # "list"

    web = ActionContext(kube_api_client=agent).kube_scope().namespace(namespace).object("deployment", "web")
    restarted = await asyncio.to_thread(restart_deployment, web, "rbac test", key="k")
    assert restarted["restarted"]

    lock = KubeLeaseLock(agent, namespace)
    assert await lock.acquire("deployment/x/web", "rbac-test", 30)
    assert not await lock.acquire("deployment/x/web", "other", 30)
    await lock.release("deployment/x/web", "rbac-test")
    assert await lock.acquire("deployment/x/web", "other", 30)


@pytest.mark.parametrize(
    "what",
    [
        "delete a deployment",
        "create a deployment",
        "read secrets",
        "list pods",
        "list deployments",
        "delete a job",
        "delete a lease",
        "scale a statefulset",
        "list namespaces",
        "act in another namespace",
    ],
)
def test_anything_else_is_refused(bound: tuple[str, Any, Any], kube: KubeCluster, what: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace, _, agent = bound
    apps, core, batch = client.AppsV1Api(agent), client.CoreV1Api(agent), client.BatchV1Api(agent)
    calls = {
        "delete a deployment": lambda: apps.delete_namespaced_deployment("web", namespace),
        "create a deployment": lambda: apps.create_namespaced_deployment(namespace, deployment_manifest("evil", 1)),
        "read secrets": lambda: core.list_namespaced_secret(namespace),
        "list pods": lambda: core.list_namespaced_pod(namespace),
        "list deployments": lambda: apps.list_namespaced_deployment(namespace),
        "delete a job": lambda: batch.delete_collection_namespaced_job(namespace),
        "delete a lease": lambda: client.CoordinationV1Api(agent).delete_collection_namespaced_lease(namespace),
        "scale a statefulset": lambda: apps.patch_namespaced_stateful_set_scale(
            "db", namespace, {"spec": {"replicas": 9}}, _content_type="application/merge-patch+json"
        ),
        "list namespaces": lambda: core.list_namespace(),
        "act in another namespace": lambda: apps.read_namespaced_deployment("web", "default"),
    }
    with pytest.raises(ApiException) as refused:
        calls[what]()
    assert refused.value.status == 403, refused.value


async def test_a_refusal_reaches_the_runtime_as_action_failed(bound: tuple[str, Any, Any], kube: KubeCluster) -> None:
    namespace, _, agent = bound
    other = kube.create_namespace(f"other-{uuid.uuid4().hex[:8]}")
    with kube.api_client() as admin:
        from kubernetes import client

        client.AppsV1Api(admin).create_namespaced_deployment(other, deployment_manifest("web", 1))
    scale = Scale(
        Scale.Params.model_validate({"type": "scale", "step": 1}), ActionContext(kube_api_client=agent, agent_id="rbac-test")
    )
    alert = firing(other, "web")
    with pytest.raises(ActionFailed, match="forbidden"):
        await scale.plan(alert, scale.target(alert))


def test_the_role_grants_exactly_the_documented_verbs(bound: tuple[str, Any, Any]) -> None:
    """What the API server says the agent may do in its namespace, beyond what every user may."""
    from kubernetes import client

    namespace, _, agent = bound
    review = client.AuthorizationV1Api(agent).create_self_subject_rules_review({"spec": {"namespace": namespace}})
    granted = {
        (group, resource, verb)
        for rule in review.status.resource_rules
        for group in rule.api_groups or [""]
        for resource in rule.resources or []
        for verb in rule.verbs
        if group != "authorization.k8s.io"  # self-reviews: granted to every authenticated user
    }
    expected = {
        ("apps", "deployments", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments/scale", "get"),
        ("apps", "deployments/scale", "patch"),
        ("autoscaling", "horizontalpodautoscalers", "get"),
        ("autoscaling", "horizontalpodautoscalers", "list"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "list"),
        ("batch", "jobs", "create"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }
    assert granted == expected
