"""The ``rollback`` action against a real MLflow tracking server (sqlite backend).

Versions are created without logging real models (``create_model_version`` with a fake
``source``), which is what the registry stores anyway; each test uses its own model or
prompt name, so they share the session server without seeing each other.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping

import pytest

from actions.alias_history import BAD_TAG, Move, history_tag
from actions.audit import decision_key
from actions.base import ActionContext, ActionFailed, Plan, TransientActionError
from actions.mlflow_registry import RegistryClient
from actions.rollback import Rollback
from agent.model import Alert, AlertState
from tests.mlflow_testbed import MlflowServer, model_with_versions

pytestmark = pytest.mark.integration

_RULE = "inference/ModelErrorRate"
_ALLOWED = {"patterns": ["fraud-[0-9a-f]{8}", "nope-[0-9a-f]{6}", "support-system-[0-9a-f]{8}"]}
"""The names these tests create (the allow-list every rollback entry must carry)."""


def _alert(labels: Mapping[str, str], active_at: float, fingerprint: str = "fp-rollback-1") -> Alert:
    return Alert(
        fingerprint=fingerprint,
        rule_id=_RULE,
        state=AlertState.FIRING,
        labels={"alertname": "ModelErrorRate", **labels},
        annotations={"summary": "errors"},
        active_at=active_at,
        value=0.2,
        fired_at=active_at + 60,
    )


def _action(url: str, **params: object) -> Rollback:
    return Rollback(
        Rollback.Params.model_validate({"type": "rollback", "allowed": _ALLOWED, **params}),
        ActionContext(mlflow_tracking_uri=url, agent_id="wk-test"),
    )


async def _plan(action: Rollback, alert: Alert) -> Plan:
    """Plan as the remediator does: the decision key set on the action first."""
    target = action.target(alert)
    action.decision_key = decision_key(alert.rule_id, alert.fingerprint, alert.active_at, 0, target.key)
    return await action.plan(alert, target)


def _holder(url: str, name: str, kind: str = "model") -> str | None:
    return RegistryClient(url, kind).alias_holder(name, "champion")  # type: ignore[arg-type]


async def test_rollback_moves_alias_back_tags_bad_and_records_why(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    name = model_with_versions(url)
    alert = _alert({"model": name, "model_version": "3", "service": "checkout"}, active_at=1000.0)
    action = _action(url)

    plan = await _plan(action, alert)
    assert plan.blocked is None and not plan.noop, plan.reason
    assert plan.before["version"] == "3" and plan.after["version"] == "2"
    assert plan.detail["previous_from"] == "fallback"  # CI set the alias: no history yet
    assert _holder(url, name) == "3", "plan must not write"

    after = await action.apply(plan, alert)
    assert after["version"] == "2" and after["from"] == "3"
    registry = RegistryClient(url, "model")
    assert registry.alias_holder(name, "champion") == "2"

    bad = json.loads(registry.version_tags(name, "3")[BAD_TAG])
    assert bad["fingerprint"] == alert.fingerprint and bad["alertname"] == "ModelErrorRate"
    assert bad["decision_key"] == action.decision_key and bad["rule_id"] == _RULE
    assert BAD_TAG not in registry.version_tags(name, "2")

    history = registry.history(name, "champion")
    assert [m.version for m in history] == ["3", "2"]  # the holder CI set, then the rollback
    assert history[0].by == "observed"
    assert history[-1].key == action.decision_key and history[-1].previous == "3" and history[-1].by == "wk-test"
    assert "ModelErrorRate" in history[-1].reason and alert.fingerprint[:16] in history[-1].reason


async def test_resent_alert_is_noop_and_new_incident_goes_one_further(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    name = model_with_versions(url)
    first = _alert({"model": name, "model_version": "3"}, active_at=2000.0)
    action = _action(url)
    await action.apply(await _plan(action, first), first)
    assert _holder(url, name) == "2"

    # The same alert again (re-sent, or the agent restarted): same key, nothing happens,
    # even though its model_version label (3) no longer matches the alias.
    again = await _plan(_action(url), _alert({"model": name, "model_version": "3"}, active_at=2000.0))
    assert again.noop and again.blocked is None, again.reason
    assert _holder(url, name) == "2"

    # Events still reporting v3 from a NEW incident (servers slow to reload): stale, blocked.
    stale = await _plan(_action(url), _alert({"model": name, "model_version": "3"}, active_at=2500.0))
    assert stale.blocked == "stale-alert", stale.reason

    # A new incident on v2: back to v1 (v3 is bad; history says v3 held it before v2).
    second = _alert({"model": name, "model_version": "2"}, active_at=3000.0)
    action = _action(url)
    plan = await _plan(action, second)
    assert plan.after["version"] == "1", plan.reason
    await action.apply(plan, second)
    assert _holder(url, name) == "1"
    history = RegistryClient(url, "model").history(name, "champion")
    assert [m.version for m in history] == ["3", "2", "1"]

    # Nothing left: v2 and v3 are bad, nothing below v1.
    third = _alert({"model": name, "model_version": "1"}, active_at=4000.0)
    blocked = await _plan(_action(url), third)
    assert blocked.blocked == "no-previous-version", blocked.reason
    assert blocked.detail["bad_versions"] == ["2", "3"]
    assert _holder(url, name) == "1"


async def test_previous_holder_from_history_beats_the_next_lower_version(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    name = model_with_versions(url, versions=3, alias_on=1)
    registry = RegistryClient(url, "model")
    # CI promotes v3 straight after v1 (v2 never served) and records the move.
    registry.move_alias(name, "champion", "3", Move("3", time.time(), by="ci", previous="1"), holder="1")
    alert = _alert({"model": name, "model_version": "3"}, active_at=5000.0)
    action = _action(url)
    plan = await _plan(action, alert)
    assert plan.after["version"] == "1" and plan.detail["previous_from"] == "history", plan.reason
    await action.apply(plan, alert)
    assert registry.alias_holder(name, "champion") == "1"


async def test_interrupted_rollback_is_finished_not_repeated(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    name = model_with_versions(url)
    alert = _alert({"model": name, "model_version": "3"}, active_at=6000.0)
    action = _action(url)
    plan = await _plan(action, alert)
    # Crash after the history write, before the alias move: the mark is there, the alias is not.
    registry = RegistryClient(url, "model")
    registry.write_history(name, "champion", [Move("2", time.time(), by="wk-test", key=action.decision_key, previous="3")])
    assert registry.alias_holder(name, "champion") == "3"

    replanned = await _plan(_action(url), alert)
    assert not replanned.noop and replanned.detail.get("resume") is True, replanned.reason
    assert replanned.after["version"] == "2"
    after = await _action(url).apply(replanned, alert)
    assert after["version"] == "2"
    assert [m.version for m in registry.history(name, "champion")] == ["2"], "the move is recorded once"
    assert (await _plan(_action(url), alert)).noop
    assert plan.after["version"] == "2"


async def test_alias_moved_by_someone_between_plan_and_apply_is_not_overridden(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    name = model_with_versions(url, versions=4, alias_on=3)
    alert = _alert({"model": name, "model_version": "3"}, active_at=6500.0)
    action = _action(url)
    plan = await _plan(action, alert)
    RegistryClient(url, "model").set_alias(name, "champion", "4")  # a human promotes v4
    with pytest.raises(ActionFailed, match="moved to 4"):
        await action.apply(plan, alert)
    assert _holder(url, name) == "4"


async def test_prompt_rollback_moves_the_prompt_alias_back(mlflow_server: MlflowServer) -> None:
    import mlflow

    url = mlflow_server.url
    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    name = f"support-system-{uuid.uuid4().hex[:8]}"
    for i in range(1, 4):
        client.register_prompt(name=name, template=f"You are support bot v{i}. {{{{question}}}}")
    client.set_prompt_alias(name, "champion", 3)

    alert = _alert({"prompt": name, "prompt_version": "3", "service": "chat"}, active_at=7000.0, fingerprint="fp-p")
    action = _action(url, registry="prompt")
    plan = await _plan(action, alert)
    assert plan.target.key == f"prompt/{name}" and plan.after["version"] == "2", plan.reason
    await action.apply(plan, alert)

    served = client.load_prompt(f"prompts:/{name}@champion")
    assert str(served.version) == "2" and "v2" in served.template
    registry = RegistryClient(url, "prompt")
    assert json.loads(registry.version_tags(name, "3")[BAD_TAG])["fingerprint"] == "fp-p"
    assert history_tag("champion") in registry.tags(name)

    assert (await _plan(_action(url, registry="prompt"), alert)).noop
    second = _alert({"prompt": name, "prompt_version": "2"}, active_at=8000.0, fingerprint="fp-p")
    action = _action(url, registry="prompt")
    await action.apply(await _plan(action, second), second)
    assert str(client.load_prompt(f"prompts:/{name}@champion").version) == "1"


async def test_missing_model_alias_or_settings_fail_clearly(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    with pytest.raises(ActionFailed, match="not found|does not exist"):
        await _plan(_action(url), _alert({"model": f"nope-{uuid.uuid4().hex[:6]}"}, 1.0))
    name = model_with_versions(url)
    with pytest.raises(ActionFailed, match="no alias 'canary'"):
        await _plan(_action(url, alias="canary"), _alert({"model": name}, 1.0))
    with pytest.raises(ActionFailed, match="no label 'model'"):
        _action(url).target(_alert({"service": "x"}, 1.0))
    no_uri = Rollback(Rollback.Params.model_validate({"type": "rollback", "allowed": _ALLOWED}), ActionContext())
    with pytest.raises(ActionFailed, match="MLFLOW_TRACKING_URI"):
        await _plan(no_uri, _alert({"model": name}, 1.0))
    restart = _action(url, restart={"namespace": "ml", "deployment": "x"})
    with pytest.raises(ActionFailed, match="Kubernetes"):
        await _plan(restart, _alert({"model": name}, 1.0))
    assert _holder(url, name) == "3"


async def test_registry_down_is_transient_and_the_rollback_completes_after_restart(
    mlflow_server: MlflowServer,
) -> None:
    url = mlflow_server.url
    name = model_with_versions(url)
    alert = _alert({"model": name, "model_version": "3"}, active_at=9000.0)
    action = _action(url)
    plan = await _plan(action, alert)
    mlflow_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(TransientActionError, match="MLflow"):
            await action.apply(plan, alert)
        with pytest.raises(TransientActionError):
            await _plan(_action(url), alert)
        elapsed = time.monotonic() - started
        assert elapsed < 30, f"a dead registry must fail fast (bounded HTTP retries), took {elapsed:.1f} s"
    finally:
        mlflow_server.start()
    after = await action.apply(plan, alert)  # the remediator's retry: same plan, same action
    assert after["version"] == "2" and _holder(url, name) == "2"
    assert [m.version for m in RegistryClient(url, "model").history(name, "champion")] == ["3", "2"]


async def test_rollback_restarts_the_serving_deployment_once(mlflow_server: MlflowServer, kube: object) -> None:
    """With ``restart``, servers that resolve the alias at start reload: one rollout restart per decision."""
    from kubernetes import client as k8s

    from actions.kube import RESTART_KEY, RESTARTED_AT, read_deployment
    from tests.k8s_testbed import KubeCluster, deployment_manifest, wait_until

    assert isinstance(kube, KubeCluster)
    url = mlflow_server.url
    namespace = kube.create_namespace(f"ml-{uuid.uuid4().hex[:6]}")
    kube.apply([deployment_manifest("scorer", 1)], namespace)
    name = model_with_versions(url)
    alert = _alert({"model": name, "model_version": "3", "service": "scorer", "namespace": namespace}, 10_000.0)
    with kube.api_client() as api:
        deployment = ActionContext(kube_api_client=api).kube_scope().namespace(namespace).object("deployment", "scorer")
        wait_until(lambda: read_deployment(deployment).rollout is None, what="the new deployment settled")
        params = {"type": "rollback", "allowed": _ALLOWED, "restart": {"namespace": "{{ $labels.namespace }}", "deployment": "{{ $labels.service }}"}}
        action = Rollback(
            Rollback.Params.model_validate(params),
            ActionContext(mlflow_tracking_uri=url, kube_api_client=api, agent_id="wk-test"),
        )
        plan = await _plan(action, alert)
        assert plan.detail["restart"] == {"namespace": namespace, "deployment": "scorer"}
        after = await action.apply(plan, alert)
        assert after["version"] == "2" and after["restart"]["restarted"] is True
        again = await action.apply(plan, alert)  # a retry after a lost reply: no second restart
        assert again["restart"]["restarted"] is False
        dep = k8s.AppsV1Api(api).read_namespaced_deployment("scorer", namespace)
    assert dep.metadata.annotations[RESTART_KEY] == action.decision_key
    assert dep.spec.template.metadata.annotations[RESTARTED_AT] == after["restart"]["restarted_at"]
    assert _holder(url, name) == "2"

    # A new incident while that restart is still rolling out is refused, and moves nothing.
    with kube.api_client() as api:
        action = Rollback(Rollback.Params.model_validate(params), ActionContext(mlflow_tracking_uri=url, kube_api_client=api))
        second = _alert({"model": name, "model_version": "2", "service": "scorer", "namespace": namespace}, 11_000.0)
        # No kubelet here: the restarted Pods never become ready, so the rollout stays open.
        blocked = await _plan(action, second)
        assert blocked.blocked == "rollout-in-progress", blocked.reason
    with kube.api_client() as api:
        missing = Rollback(
            Rollback.Params.model_validate({**params, "restart": {"namespace": namespace, "deployment": "nope"}}),
            ActionContext(mlflow_tracking_uri=url, kube_api_client=api),
        )
        with pytest.raises(ActionFailed, match="not found"):
            await _plan(missing, second)
    assert _holder(url, name) == "2"
