"""The HorizontalPodAutoscaler that owns a Deployment's replicas, and raising its floor.

Works against Kubernetes 1.20 (the test control plane) and current releases: HPAs are
read and patched through ``autoscaling/v1``, which every release serves and which
carries the two fields touched here (``scaleTargetRef``, ``minReplicas``) for HPAs
written in any version; the API server converts, so ``autoscaling/v2*`` metrics and
behavior survive the patch (a test checks it). Client 37 has no ``v2beta2`` module and
1.20 has no ``v2``. Blocking functions; call through ``asyncio.to_thread``.
"""

from __future__ import annotations

from typing import Any

from actions.base import ActionFailed
from actions.kube import MERGE_PATCH, apis, kube_errors, retry_conflicts
from actions.kube_target import KubeTarget

__all__ = ["find_hpa", "raise_hpa_min_replicas"]


def find_hpa(target: KubeTarget) -> dict[str, Any] | None:
    """The HPA whose scaleTargetRef is this Deployment, as ``{name, min_replicas, max_replicas, resource_version}``.

    Listing is needed because nothing ties an HPA's name to its target. Two HPAs on
    one Deployment is a misconfiguration Kubernetes itself refuses to act on
    (``AmbiguousSelector``); it is an ``ActionFailed`` here too.
    """
    if target.kind != "deployment":
        raise TypeError(f"find_hpa takes a checked deployment, not {target}")
    namespace, deployment = target.ns, target.name
    with kube_errors(f"list HPAs in {namespace}"):
        hpas = apis().AutoscalingV1Api(target.api_client()).list_namespaced_horizontal_pod_autoscaler(namespace).items
    found = [
        h
        for h in hpas
        if h.spec.scale_target_ref.kind == "Deployment"
        and h.spec.scale_target_ref.name == deployment
        and (h.spec.scale_target_ref.api_version or "apps/v1").split("/")[0] in ("apps", "extensions")
    ]
    if len(found) > 1:
        names = ", ".join(sorted(h.metadata.name for h in found))
        raise ActionFailed(f"deployment {namespace}/{deployment} has {len(found)} HPAs ({names}); refusing to guess")
    if not found:
        return None
    hpa = found[0]
    return {
        "name": hpa.metadata.name,
        "min_replicas": int(hpa.spec.min_replicas or 1),
        "max_replicas": int(hpa.spec.max_replicas),
        "resource_version": str(hpa.metadata.resource_version),
    }


def raise_hpa_min_replicas(target: KubeTarget, min_replicas: int) -> dict[str, Any]:
    """Raise (never lower) the HPA's ``minReplicas`` to ``min_replicas``; read-compare-patch, retry on 409."""
    if target.kind != "hpa":
        raise TypeError(f"raise_hpa_min_replicas takes a checked hpa, not {target}")
    namespace, name = target.ns, target.name
    autoscaling = apis().AutoscalingV1Api(target.api_client())
    conflicts: list[int] = []
    changed = [False]

    def attempt() -> Any:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler(name, namespace)
        if int(hpa.spec.min_replicas or 1) >= min_replicas:
            return hpa
        if int(hpa.spec.max_replicas) < min_replicas:
            raise ActionFailed(
                f"HPA {namespace}/{name}: maxReplicas {hpa.spec.max_replicas} is below the wanted minReplicas {min_replicas}"
            )
        body = {"metadata": {"resourceVersion": hpa.metadata.resource_version}, "spec": {"minReplicas": min_replicas}}
        result = autoscaling.patch_namespaced_horizontal_pod_autoscaler(name, namespace, body, _content_type=MERGE_PATCH)
        changed[0] = True
        return result

    hpa = retry_conflicts(f"raise minReplicas of HPA {namespace}/{name} to {min_replicas}", attempt, conflicts)
    return {
        "hpa": name,
        "min_replicas": int(hpa.spec.min_replicas or 1),
        "max_replicas": int(hpa.spec.max_replicas),
        "conflicts": len(conflicts),
        "changed": changed[0],
    }
