"""The Kubernetes control plane the action tests rely on really serves what they use."""

from __future__ import annotations

import uuid

import pytest

from tests.k8s_testbed import KubeCluster, deployment_manifest, wait_until

pytestmark = pytest.mark.integration


def test_cluster_serves_deployments_and_the_scale_subresource(kube: KubeCluster) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace = kube.create_namespace(f"tb-{uuid.uuid4().hex[:8]}")
    with kube.api_client() as api:
        apps = client.AppsV1Api(api)
        apps.create_namespaced_deployment(namespace, deployment_manifest("web", 2))
        # the controller-manager runs: it creates the ReplicaSet and reports status
        dep = wait_until(
            lambda: (
                (d := apps.read_namespaced_deployment("web", namespace)).status.observed_generation == 1
                and d.status.updated_replicas == 2
                and d
            ),
            what="deployment reconciled",
        )
        assert dep.status.available_replicas in (None, 0)  # no kubelet: Pods stay Pending

        scale = apps.read_namespaced_deployment_scale("web", namespace)
        assert scale.spec.replicas == 2
        body = {"metadata": {"resourceVersion": scale.metadata.resource_version}, "spec": {"replicas": 3}}
        apps.patch_namespaced_deployment_scale("web", namespace, body, _content_type="application/merge-patch+json")
        assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3

        # a stale resourceVersion is refused with 409 (what retry-on-conflict relies on)
        with pytest.raises(ApiException) as stale:
            apps.patch_namespaced_deployment_scale("web", namespace, body, _content_type="application/merge-patch+json")
        assert stale.value.status == 409


def test_kubectl_talks_to_it(kube: KubeCluster) -> None:
    """The kubectl built with the servers works against them (handy when debugging a failed test)."""
    if not (kube.bin_dir / "kubectl").is_file():
        pytest.skip("kubectl was not built (.ci/k8s-testbed builds it)")
    assert "v1.20.2" in kube.kubectl("version", "--short")
    assert "default" in kube.kubectl("get", "serviceaccounts", "-n", "default", "-o", "name")
