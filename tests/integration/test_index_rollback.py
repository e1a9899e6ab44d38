"""Rolling back a vector index's serving alias, against a real MLflow server.

An index is registered like a model (one registered model per index, one version per
build, tagged ``watchkeeper.kind=index``) and rolled back with the same alias history,
bad-version tags and stale-alert check as a model.
"""

from __future__ import annotations

import json
import uuid

import pytest

from actions.alias_history import BAD_TAG
from actions.audit import decision_key
from actions.base import ActionContext, ActionFailed
from actions.mlflow_registry import INDEX_KIND_TAG, RegistryClient
from actions.rollback import Rollback
from agent.model import Alert, AlertState
from tests.mlflow_testbed import MlflowServer, model_with_versions

pytestmark = pytest.mark.integration

_ALLOWED = {"patterns": ["docs-[0-9a-f]{8}", "fraud-[0-9a-f]{8}"]}


def _index_with_builds(url: str, builds: int = 2, alias_on: int | None = None) -> str:
    from mlflow import MlflowClient

    name = f"docs-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    client.create_registered_model(name, tags=dict([INDEX_KIND_TAG]))
    for build in range(1, builds + 1):
        client.create_model_version(name, source=f"s3://indexes/{name}/v{build}.faiss", await_creation_for=0)
    client.set_registered_model_alias(name, "live", str(alias_on or builds))
    return name


def _alert(labels: dict[str, str], active_at: float = 5000.0) -> Alert:
    return Alert(
        fingerprint="fp-index-1", rule_id="retrieval/RetrievalEmptyHits", state=AlertState.FIRING,
        labels={"alertname": "RetrievalEmptyHits", **labels}, annotations={}, active_at=active_at, value=0.6,
        fired_at=active_at + 30,
    )


def _action(url: str, **params: object) -> Rollback:
    return Rollback(
        Rollback.Params.model_validate({"type": "rollback", "registry": "index", "alias": "live", "allowed": _ALLOWED, **params}),
        ActionContext(mlflow_tracking_uri=url, agent_id="wk-test"),
    )


async def _run(action: Rollback, alert: Alert):
    target = action.target(alert)
    action.decision_key = decision_key(alert.rule_id, alert.fingerprint, alert.active_at, 0, target.key)
    plan = await action.plan(alert, target)
    return target, plan


async def test_index_alias_goes_back_to_the_previous_build(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    name = _index_with_builds(url)
    alert = _alert({"service": "support-bot", "index": name, "index_version": "2"})
    action = _action(url)
    target, plan = await _run(action, alert)
    assert target.key == f"index/{name}"
    assert plan.blocked is None and (plan.before["version"], plan.after["version"]) == ("2", "1"), plan.reason
    after = await action.apply(plan, alert)
    assert (after["registry"], after["version"], after["from"]) == ("index", "1", "2")
    registry = RegistryClient(url, "index")
    assert registry.alias_holder(name, "live") == "1"
    assert json.loads(registry.version_tags(name, "2")[BAD_TAG])["alertname"] == "RetrievalEmptyHits"
    assert [m.version for m in registry.history(name, "live")] == ["2", "1"]

    again = _action(url)  # the alert re-sent: already done, never twice
    _, replay = await _run(again, alert)
    assert replay.noop and replay.blocked is None and registry.alias_holder(name, "live") == "1"


async def test_alert_about_an_older_build_is_stale(mlflow_server: MlflowServer) -> None:
    url = mlflow_server.url
    name = _index_with_builds(url, builds=3)
    _, plan = await _run(_action(url), _alert({"index": name, "index_version": "2"}))
    assert plan.blocked == "stale-alert", plan.reason
    assert RegistryClient(url, "index").alias_holder(name, "live") == "3"


async def test_an_index_rollback_never_moves_a_models_alias(mlflow_server: MlflowServer) -> None:
    """A registered model without the index tag is refused, even when the allow-list matches its name."""
    url = mlflow_server.url
    model = model_with_versions(url)  # fraud-xxxxxxxx, champion on 3
    action = _action(url, alias="champion", version_label="")
    with pytest.raises(ActionFailed, match="not a vector index"):
        await _run(action, _alert({"index": model}))
    assert RegistryClient(url, "model").alias_holder(model, "champion") == "3"


async def test_index_names_outside_the_allow_list_are_refused_before_any_request(mlflow_server: MlflowServer) -> None:
    from actions.base import TargetRefused

    with pytest.raises(TargetRefused) as refused:
        _action(mlflow_server.url).target(_alert({"index": "customer-pii"}))
    assert refused.value.guard == "allowed-names"
