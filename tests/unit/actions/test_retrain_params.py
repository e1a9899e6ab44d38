"""Retrain: validation, the request body and the topic mode (Jobs: tests/integration/test_kube_actions.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from actions.base import ActionContext, ActionFailed, TransientActionError
from actions.kube_jobs import DECISION_LABEL, MODEL_LABEL, build_job
from actions.registry import ACTIONS
from actions.retrain import Retrain
from agent.model import Alert, AlertState

TEMPLATE = {
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "t",
                        "image": "i",
                        "env": [{"name": "KEEP", "value": "1"}, {"name": "WATCHKEEPER_MODEL", "value": "stale"}],
                    }
                ]
            }
        }
    }
}


def alert(**labels: str) -> Alert:
    return Alert(
        fingerprint="fp1",
        rule_id="drift",
        state=AlertState.FIRING,
        labels={"alertname": "FeatureDrift", **labels},
        annotations={"summary": "amount drifted"},
        active_at=10_000.0,
        fired_at=10_300.0,
        value=float("nan"),
        evidence={"p_value": 0.001, "psi": float("inf")},
    )


def test_registered_and_defaults() -> None:
    assert ACTIONS["retrain"] is Retrain
    params = Retrain.Params.model_validate({"type": "retrain"})
    assert (params.via, params.topic, params.cooldown, params.window) == ("topic", None, 21600.0, 86400.0)
    # unset, the topic is the agent's (WATCHKEEPER_TOPIC_RETRAIN), else the default name
    assert Retrain(params, ActionContext()).topic == "watchkeeper.retrain"
    assert Retrain(params, ActionContext(extra={"retrain_topic": "ml.retrain"})).topic == "ml.retrain"
    named = Retrain.Params.model_validate({"type": "retrain", "topic": "team.retrain"})
    assert Retrain(named, ActionContext(extra={"retrain_topic": "ml.retrain"})).topic == "team.retrain"
    assert Retrain.Params.model_validate({"type": "retrain", "min_interval": "12h"}).cooldown == 43200.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"via": "job"}, "needs namespace and job_template"),
        ({"via": "job", "namespace": "ml", "job_template": {"spec": {}}}, "containers"),
        ({"job_template": TEMPLATE}, "only used with via: job"),
        ({"topic": "bad topic"}, "pattern"),
        ({"model": "{{ $value }}"}, "may be used here"),
    ],
)
def test_bad_params_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Retrain.Params.model_validate({"type": "retrain", **params})


async def test_topic_mode_publishes_one_json_request() -> None:
    sent: list[tuple[str, bytes, bytes]] = []

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key, value))

    action = Retrain(
        Retrain.Params.model_validate({"type": "retrain", "window": "2h"}), ActionContext(publish=publish, agent_id="agent-1")
    )
    action.decision_key = "k" * 64
    a = alert(model="fraud", model_version="7")
    target = action.target(a)
    assert target.key == "retrain/fraud"
    plan = await action.plan(a, target)
    assert plan.after == {"topic": "watchkeeper.retrain", "model": "fraud", "model_version": "7"}
    await action.apply(plan, a)
    ((topic, key, value),) = sent
    request = json.loads(value)
    assert (topic, key) == ("watchkeeper.retrain", b"fraud")
    assert request["window"] == {"from": 10_300.0 - 7200, "to": 10_300.0}
    assert request["evidence"] == {"p_value": 0.001, "psi": None}  # JSON-safe
    assert request["decision_key"] == "k" * 64 and request["fingerprint"] == "fp1"
    assert request["reason"] == "FeatureDrift: amount drifted" and request["requested_by"] == "agent-1"


async def test_topic_mode_failures_are_classified() -> None:
    async def broken(topic: str, key: bytes, value: bytes) -> None:
        raise ConnectionError("broker down")

    a = alert(model="fraud")
    no_producer = Retrain(Retrain.Params.model_validate({"type": "retrain"}), ActionContext())
    with pytest.raises(ActionFailed, match="no Kafka producer"):
        await no_producer.apply(await no_producer.plan(a, no_producer.target(a)), a)
    down = Retrain(Retrain.Params.model_validate({"type": "retrain"}), ActionContext(publish=broken))
    with pytest.raises(TransientActionError, match="broker down"):
        await down.apply(await down.plan(a, down.target(a)), a)
    with pytest.raises(ActionFailed, match="no label 'model'"):
        down.target(alert())


def test_build_job_labels_env_and_name() -> None:
    job = build_job(TEMPLATE, "retrain-fraud-abc", "fraud", "k" * 64, {"WATCHKEEPER_MODEL": "fraud"}, {"model": "fraud"})
    assert job["metadata"]["name"] == "retrain-fraud-abc" and job["kind"] == "Job"
    assert job["metadata"]["labels"][MODEL_LABEL] == "fraud"
    assert job["metadata"]["labels"][DECISION_LABEL] == "k" * 63
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "KEEP", "value": "1"}, {"name": "WATCHKEEPER_MODEL", "value": "fraud"}]
    assert TEMPLATE["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] == "stale"  # template untouched
