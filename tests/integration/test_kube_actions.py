"""The Kubernetes actions (scale, retrain via Job, restart, Lease) against a real API server + controllers.

Every test gets its own namespace on the session's control plane (``kube`` fixture).
The admin identity is used here; tests/integration/test_kube_rbac.py repeats the
essentials with the least-privileged ServiceAccount from deploy/kubernetes/base/rbac.yaml.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actions.base import ActionContext, ActionFailed
from actions.kube import LAST_ACTION, LAST_ACTION_TARGET, restart_deployment
from actions.kube_jobs import MODEL_LABEL
from actions.lease import KubeLeaseLock, lease_name
from actions.retrain import Retrain
from actions.scale import Scale
from agent.model import Alert, AlertState
from tests.k8s_testbed import KubeCluster, deployment_manifest, wait_until

pytestmark = pytest.mark.integration


def alert(namespace: str, deployment: str = "web", *, active_at: float = 1_000.0, **labels: str) -> Alert:
    return Alert(
        fingerprint=f"fp-{namespace}-{deployment}",
        rule_id="latency-high",
        state=AlertState.FIRING,
        labels={"alertname": "LatencyHigh", "namespace": namespace, "deployment": deployment, **labels},
        annotations={"summary": "p99 latency above 500 ms"},
        active_at=active_at,
        value=0.9,
        fired_at=active_at + 60,
        evidence={"p99_ms": 812.0},
    )


@pytest.fixture
def api(kube: KubeCluster) -> Iterator[Any]:
    with kube.api_client() as client:
        yield client


@pytest.fixture
def namespace(kube: KubeCluster) -> str:
    return kube.create_namespace(f"wk-{uuid.uuid4().hex[:10]}")


def create_deployment(api: Any, namespace: str, name: str, replicas: int) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment_manifest(name, replicas))
    wait_until(lambda: _settled(apps, namespace, name, replicas), what=f"deployment {name} reconciled")


def _settled(apps: Any, namespace: str, name: str, replicas: int) -> bool:
    d = apps.read_namespaced_deployment(name, namespace)
    return bool(
        d.status.observed_generation == d.metadata.generation
        and d.status.updated_replicas == replicas
        and (d.status.replicas or 0) == replicas
    )


def observed(api: Any, namespace: str, name: str = "web") -> None:
    """Wait until the controller has seen the Deployment's latest spec (annotations count: they bump generation)."""
    from kubernetes import client

    apps = client.AppsV1Api(api)

    def seen() -> bool:
        d = apps.read_namespaced_deployment(name, namespace)
        return bool(d.status.observed_generation == d.metadata.generation)

    wait_until(seen, what=f"deployment {name} observed")


def replicas_of(api: Any, namespace: str, name: str = "web") -> int:
    from kubernetes import client

    return int(client.AppsV1Api(api).read_namespaced_deployment(name, namespace).spec.replicas)


def annotations_of(api: Any, namespace: str, name: str = "web") -> dict[str, str]:
    from kubernetes import client

    return dict(client.AppsV1Api(api).read_namespaced_deployment(name, namespace).metadata.annotations or {})


def scale(api: Any, **params: Any) -> Scale:
    return Scale(Scale.Params.model_validate({"type": "scale", **params}), ActionContext(kube_api_client=api, agent_id="t"))


# -- scale --------------------------------------------------------------------------


async def test_scale_executes_once_within_max_step_and_a_replay_is_a_noop(api: Any, namespace: str) -> None:
    create_deployment(api, namespace, "web", 2)
    action = scale(api, step=5, max_step=2, max_replicas=10)
    firing = alert(namespace)
    target = action.target(firing)
    assert target.key == f"deployment/{namespace}/web"

    plan = await action.plan(firing, target)
    assert (plan.noop, plan.blocked, plan.before["replicas"], plan.after) == (False, None, 2, {"replicas": 4})
    after = await action.apply(plan, firing)
    assert after["replicas"] == 4 == replicas_of(api, namespace)
    assert annotations_of(api, namespace)[LAST_ACTION] == plan.detail["decision_key"]

    # the same alert again (re-sent, or another agent, or after a restart): nothing more
    for again in (action, scale(api, step=5, max_step=2, max_replicas=10)):
        replay = await again.plan(firing, target)
        assert replay.noop, replay.reason
    assert replicas_of(api, namespace) == 4

    # a new incident of the same series (new active_at) is a new decision: one more step
    later = alert(namespace, active_at=5_000.0)
    observed(api, namespace)
    plan2 = await action.plan(later, target)
    assert plan2.after == {"replicas": 6}
    await action.apply(plan2, later)
    assert replicas_of(api, namespace) == 6


async def test_two_agents_planning_the_same_alert_scale_once(api: Any, namespace: str, kube: KubeCluster) -> None:
    """Both plan before either writes (the lease only serialises the writes): plans carry an absolute target."""
    create_deployment(api, namespace, "web", 2)
    firing = alert(namespace)
    with kube.api_client() as other_api:
        agents = [scale(api, step=2), scale(other_api, step=2)]
        plans = [await a.plan(firing, a.target(firing)) for a in agents]
        assert [p.after for p in plans] == [{"replicas": 4}, {"replicas": 4}]
        for agent, plan in zip(agents, plans, strict=True):
            await agent.apply(plan, firing)
    assert replicas_of(api, namespace) == 4


async def test_a_crash_between_mark_and_scale_is_finished_not_repeated(api: Any, namespace: str) -> None:
    """The mark is written first with the absolute target; a re-run completes that target once."""
    from kubernetes import client

    create_deployment(api, namespace, "web", 2)
    action = scale(api, step=2)
    firing = alert(namespace)
    target = action.target(firing)
    plan = await action.plan(firing, target)
    # simulate the crash: only the mark got written
    mark = {LAST_ACTION: plan.detail["decision_key"], LAST_ACTION_TARGET: "replicas=4"}
    client.AppsV1Api(api).patch_namespaced_deployment(
        "web", namespace, {"metadata": {"annotations": mark}}, _content_type="application/merge-patch+json"
    )
    resumed = await action.plan(firing, target)
    assert not resumed.noop and resumed.after == {"replicas": 4} and resumed.detail.get("resumed")
    await action.apply(resumed, firing)
    assert replicas_of(api, namespace) == 4
    assert (await action.plan(firing, target)).noop
    assert replicas_of(api, namespace) == 4  # not 6: the step was not applied twice


async def test_a_conflicting_writer_causes_a_retry_not_a_failure(
    api: Any, namespace: str, kube: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client writes the Deployment between our read and our write: 409, re-read, success."""
    from kubernetes import client

    create_deployment(api, namespace, "web", 2)
    original = client.AppsV1Api.read_namespaced_deployment_scale
    interfered: list[str] = []

    def read_then_someone_else_writes(self: Any, name: str, ns: str, **kw: Any) -> Any:
        result = original(self, name, ns, **kw)
        if ns == namespace and len(interfered) < 2:  # the first two reads go stale at once
            with kube.api_client() as other:
                client.AppsV1Api(other).patch_namespaced_deployment(
                    name,
                    ns,
                    {"metadata": {"annotations": {"other-writer": str(len(interfered))}}},
                    _content_type="application/merge-patch+json",
                )
            interfered.append(result.metadata.resource_version)
        return result

    monkeypatch.setattr(client.AppsV1Api, "read_namespaced_deployment_scale", read_then_someone_else_writes)
    action = scale(api, replicas=5)
    firing = alert(namespace)
    plan = await action.plan(firing, action.target(firing))
    after = await action.apply(plan, firing)
    assert after["conflicts"] == 2 and after["replicas"] == 5 == replicas_of(api, namespace)
    assert annotations_of(api, namespace)["other-writer"] == "1"  # the other writer's change survived


async def test_scale_succeeds_while_another_writer_keeps_patching(api: Any, namespace: str, kube: KubeCluster) -> None:
    """A real concurrent writer (its own client, its own thread) hammers the Deployment during ``apply``.

    ``plan`` runs while it is quiet: a Deployment's annotations are part of what bumps its
    ``generation``, so under a continuous writer the controller never catches up and
    ``plan`` would (rightly) see a rollout-in-progress.
    """
    from kubernetes import client

    create_deployment(api, namespace, "web", 1)
    stop, writing = threading.Event(), threading.Event()
    writes = [0]

    def writer() -> None:
        with kube.api_client() as other:
            apps = client.AppsV1Api(other)
            while not stop.is_set():
                if not writing.wait(0.02):
                    continue
                apps.patch_namespaced_deployment(
                    "web",
                    namespace,
                    {"metadata": {"annotations": {"noise": str(writes[0])}}},
                    _content_type="application/merge-patch+json",
                )
                writes[0] += 1
                time.sleep(0.005)  # a busy controller, not a denial of service

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    total_conflicts = 0
    try:
        for n, replicas in enumerate((3, 5, 7)):
            action = scale(api, replicas=replicas, max_step=2)
            firing = alert(namespace, active_at=1_000.0 + n)
            plan = await action.plan(firing, action.target(firing))
            assert plan.blocked is None, plan.reason
            before = writes[0]
            writing.set()
            wait_until(lambda b=before: writes[0] >= b + 3, what="the other writer running")
            after = await action.apply(plan, firing)
            writing.clear()
            total_conflicts += after["conflicts"]
            assert after["replicas"] == replicas
            # the next alert comes once the controller has seen this change
            wait_until(lambda r=replicas: _settled(client.AppsV1Api(api), namespace, "web", r), what="settled")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert replicas_of(api, namespace) == 7
    print(f"conflicts retried: {total_conflicts}, other writes: {writes[0]}")


async def test_with_an_hpa_the_action_raises_min_replicas_and_leaves_replicas_to_it(api: Any, namespace: str) -> None:
    from kubernetes import client

    create_deployment(api, namespace, "web", 2)
    autoscaling = client.AutoscalingV1Api(api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "web-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 6,
                "targetCPUUtilizationPercentage": 70,
            },
        },
    )
    action = scale(api, step=3, max_step=5, max_replicas=10)
    firing = alert(namespace)
    plan = await action.plan(firing, action.target(firing))
    assert plan.detail["via"] == "hpa" and plan.after == {"hpa": "web-hpa", "hpa_min_replicas": 5}
    assert plan.before["replicas"] == 2 and plan.before["hpa_min_replicas"] == 2
    after = await action.apply(plan, firing)
    assert after["hpa_min_replicas"] == 5
    hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("web-hpa", namespace)
    assert hpa.spec.min_replicas == 5 and hpa.spec.max_replicas == 6
    assert annotations_of(api, namespace)[LAST_ACTION_TARGET] == "hpa/web-hpa.minReplicas=5"
    # the action wrote no replicas; the real HPA controller brings them up to its new floor
    wait_until(lambda: replicas_of(api, namespace) == 5, timeout_s=90, what="the HPA controller scaling to 5")
    observed(api, namespace)
    assert (await action.plan(firing, action.target(firing))).noop

    # the HPA's own maxReplicas caps the floor (6), and at the cap the action is blocked
    second = alert(namespace, active_at=9_000.0)
    plan2 = await action.plan(second, action.target(second))
    assert plan2.after["hpa_min_replicas"] == 6
    await action.apply(plan2, second)
    observed(api, namespace)
    third = alert(namespace, active_at=19_000.0)
    blocked = await action.plan(third, action.target(third))
    assert blocked.blocked == "blast-radius", blocked.reason


async def test_blast_radius_blocks_at_max_replicas(api: Any, namespace: str) -> None:
    create_deployment(api, namespace, "web", 4)
    action = scale(api, step=2, max_replicas=4)
    firing = alert(namespace)
    plan = await action.plan(firing, action.target(firing))
    assert plan.blocked == "blast-radius" and "limit 4" in plan.reason
    # a Deployment someone scaled above max_replicas is not scaled down by a scale-up alert
    from kubernetes import client

    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        "web", namespace, {"spec": {"replicas": 6}}, _content_type="application/merge-patch+json"
    )
    observed(api, namespace)
    plan = await action.plan(firing, action.target(firing))
    assert plan.blocked == "blast-radius" and plan.after == {"replicas": 6}
    assert replicas_of(api, namespace) == 6


async def test_rollout_in_progress_blocks_and_restart_is_idempotent(api: Any, namespace: str) -> None:
    create_deployment(api, namespace, "web", 2)
    web = ActionContext(kube_api_client=api).kube_scope().namespace(namespace).object("deployment", "web")
    first = await asyncio.to_thread(restart_deployment, web, "model v7 rolled back", key="k1")
    assert first["restarted"]
    again = await asyncio.to_thread(restart_deployment, web, "model v7 rolled back", key="k1")
    assert not again["restarted"] and again["generation"] == first["generation"]
    from kubernetes import client

    dep = client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert dep.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"] == first["restarted_at"]
    assert dep.metadata.annotations["watchkeeper.io/restart-reason"] == "model v7 rolled back"

    # no kubelet: new Pods never become available, so the rollout stays in progress
    action = scale(api, step=1)
    firing = alert(namespace)
    plan = await action.plan(firing, action.target(firing))
    assert plan.blocked == "rollout-in-progress", plan.reason
    assert replicas_of(api, namespace) == 2


async def test_scale_errors_are_classified(api: Any, namespace: str) -> None:
    action = scale(api, step=1)
    missing = alert(namespace, deployment="absent")
    with pytest.raises(ActionFailed, match="not found"):
        await action.plan(missing, action.target(missing))
    with pytest.raises(ActionFailed, match="no label 'deployment'"):
        bad = Alert(
            fingerprint="f",
            rule_id="r",
            state=AlertState.FIRING,
            labels={"namespace": namespace},
            annotations={},
            active_at=1.0,
            value=1.0,
        )
        action.target(bad)


# -- retrain via Job ------------------------------------------------------------------

JOB_TEMPLATE = {
    "spec": {
        "backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "train", "image": "registry.invalid/train:1"}]}},
    }
}


def retrain(api: Any, namespace: str) -> Retrain:
    params = Retrain.Params.model_validate(
        {"type": "retrain", "via": "job", "namespace": namespace, "job_template": JOB_TEMPLATE}
    )
    return Retrain(params, ActionContext(kube_api_client=api, agent_id="t"))


def jobs_for(api: Any, namespace: str, model: str) -> list[Any]:
    from kubernetes import client

    return client.BatchV1Api(api).list_namespaced_job(namespace, label_selector=f"{MODEL_LABEL}={model}").items


async def test_retrain_job_is_created_once_and_blocks_a_second_request(api: Any, namespace: str) -> None:
    firing = alert(namespace, model="fraud", model_version="7")
    action = retrain(api, namespace)
    target = action.target(firing)
    plan = await action.plan(firing, target)
    assert not plan.noop and plan.blocked is None
    created = await action.apply(plan, firing)
    assert created["created"]
    # the same decision again, from a fresh instance (a restart) and straight to apply (a crash after create)
    again = retrain(api, namespace)
    assert (await again.plan(firing, target)).noop
    assert not (await again.apply(plan, firing))["created"]
    jobs = jobs_for(api, namespace, "fraud")
    assert len(jobs) == 1
    job = jobs[0]
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["WATCHKEEPER_MODEL"] == "fraud" and env["WATCHKEEPER_MODEL_VERSION"] == "7"
    assert env["WATCHKEEPER_DECISION_KEY"] == plan.detail["decision_key"]

    # a new incident for the same model while that Job is open: blocked, nothing created
    later = alert(namespace, active_at=50_000.0, model="fraud", model_version="7")
    blocked = await action.plan(later, action.target(later))
    assert blocked.blocked == "open-request" and job.metadata.name in blocked.reason
    # another model is independent
    other = alert(namespace, model="ranker")
    plan_other = await action.plan(other, action.target(other))
    assert plan_other.blocked is None
    await action.apply(plan_other, other)
    assert len(jobs_for(api, namespace, "fraud")) == 1 and len(jobs_for(api, namespace, "ranker")) == 1


# -- Lease ---------------------------------------------------------------------------


async def test_lease_admits_one_holder_until_release_or_expiry(api: Any, namespace: str) -> None:
    lock = KubeLeaseLock(api, namespace)
    key = f"deployment/{namespace}/web"
    assert await lock.acquire(key, "agent-a", 30)
    assert not await lock.acquire(key, "agent-b", 30)
    assert await lock.acquire(key, "agent-a", 30)  # renewing one's own is fine
    await lock.release(key, "agent-b")  # not the holder: no effect
    assert lock.holder(key) == "agent-a"
    await lock.release(key, "agent-a")
    await lock.release(key, "agent-a")  # idempotent
    assert await lock.acquire(key, "agent-b", 30)

    short = f"deployment/{namespace}/api"
    assert await lock.acquire(short, "agent-a", 1)
    assert not await lock.acquire(short, "agent-b", 30)
    await asyncio.sleep(1.6)
    assert await lock.acquire(short, "agent-b", 30)  # expired: taken over
    from kubernetes import client

    lease = client.CoordinationV1Api(api).read_namespaced_lease(lease_name(short), namespace)
    assert lease.spec.holder_identity == "agent-b" and lease.spec.lease_transitions == 1


async def test_two_agents_racing_for_a_fresh_lease_get_it_once(api: Any, namespace: str, kube: KubeCluster) -> None:
    key = f"deployment/{namespace}/race"
    results: list[bool] = []
    for round_ in range(5):
        clients = [kube.api_client(), kube.api_client()]
        locks = [KubeLeaseLock(c, namespace) for c in clients]
        results = list(await asyncio.gather(*(lock.acquire(f"{key}-{round_}", f"agent-{i}", 30) for i, lock in enumerate(locks))))
        for c in clients:
            c.close()
        assert sorted(results) == [False, True], results


async def test_an_autoscaling_v2beta2_hpa_keeps_its_metrics_when_its_floor_is_raised(
    api: Any, namespace: str, kube: KubeCluster, tmp_path: Any
) -> None:
    """HPAs are read and patched through autoscaling/v1 (served everywhere); v2 fields must survive."""
    import json

    if not (kube.bin_dir / "kubectl").is_file():
        pytest.skip("kubectl was not built (.ci/k8s-testbed builds it)")
    create_deployment(api, namespace, "web", 2)
    manifest = {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 9,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {"metric": {"name": "inflight_requests"}, "target": {"type": "AverageValue", "averageValue": "30"}},
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}},
        },
    }
    path = tmp_path / "hpa.json"
    path.write_text(json.dumps(manifest))
    kube.kubectl("create", "-f", str(path))
    action = scale(api, step=2)
    firing = alert(namespace)
    plan = await action.plan(firing, action.target(firing))
    assert plan.after == {"hpa": "web", "hpa_min_replicas": 4}
    await action.apply(plan, firing)
    hpa = json.loads(kube.kubectl("get", "horizontalpodautoscalers.v2beta2.autoscaling", "web", "-n", namespace, "-o", "json"))
    assert hpa["spec"]["minReplicas"] == 4
    assert hpa["spec"]["metrics"] == manifest["spec"]["metrics"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
