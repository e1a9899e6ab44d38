"""Fast checks of the scale kind's arithmetic and validation (the real behaviour: tests/integration/test_kube_actions.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from actions.base import ActionContext, ActionFailed, TransientActionError
from actions.kube import api_status, kube_errors
from actions.registry import ACTIONS
from actions.scale import Scale
from agent.model import Alert, AlertState


def make(**params: Any) -> Scale:
    return Scale(Scale.Params.model_validate({"type": "scale", **params}), ActionContext())


def alert(**labels: str) -> Alert:
    return Alert(fingerprint="f", rule_id="r", state=AlertState.FIRING, labels=labels, annotations={}, active_at=1.0, value=1.0)


def test_registered() -> None:
    assert ACTIONS["scale"] is Scale


@pytest.mark.parametrize(
    ("params", "base", "wanted"),
    [
        ({"step": 2}, 3, 5),
        ({"step": 9, "max_step": 3}, 3, 6),
        ({"step": 4, "max_replicas": 6}, 4, 6),
        ({"step": 2, "max_replicas": 6}, 9, 9),  # above max by hand: a scale-up never scales down
        ({"step": -3, "min_replicas": 2}, 4, 2),
        ({"step": -1, "min_replicas": 2}, 1, 1),  # below min by hand: a scale-down never scales up
        ({"replicas": 8, "max_step": 2}, 3, 5),
        ({"replicas": 2, "max_step": 5}, 9, 4),
        ({"replicas": 0, "min_replicas": 0}, 1, 0),
    ],
)
def test_wanted_respects_limits_and_direction(params: dict[str, Any], base: int, wanted: int) -> None:
    assert make(**params)._wanted(base) == wanted


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of replicas"),
        ({"replicas": 3, "step": 1}, "exactly one of replicas"),
        ({"step": 0}, "step must not be 0"),
        ({"step": 1, "min_replicas": 5, "max_replicas": 3}, "above max_replicas"),
        ({"replicas": 20}, "outside"),
        ({"step": 1, "deployment": "{{ $value }}"}, "may be used here"),
        ({"step": 1, "replica": 3}, "Extra inputs"),
    ],
)
def test_bad_params_are_refused_at_load(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Scale.Params.model_validate({"type": "scale", **params})


def test_target_from_labels_or_literals() -> None:
    assert make(step=1).target(alert(namespace="shop", deployment="ranker")).key == "deployment/shop/ranker"
    literal = make(step=1, namespace="ml", deployment="{{ $labels.service }}-gpu")
    assert literal.target(alert(service="llm")).key == "deployment/ml/llm-gpu"
    with pytest.raises(ActionFailed, match="no label 'deployment'"):
        make(step=1).target(alert(namespace="shop"))
    with pytest.raises(ActionFailed, match="not a valid Kubernetes name"):
        make(step=1).target(alert(namespace="shop", deployment="Bad_Name"))


async def test_without_a_kubernetes_client_the_failure_names_the_setting() -> None:
    action = make(step=1)
    a = alert(namespace="shop", deployment="ranker")
    with pytest.raises(ActionFailed, match="WATCHKEEPER_KUBECONFIG"):
        await action.plan(a, action.target(a))


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (409, TransientActionError, "HTTP 409"),
        (429, TransientActionError, "HTTP 429"),
        (503, TransientActionError, "HTTP 503"),
        (403, ActionFailed, "forbidden"),
        (404, ActionFailed, "not found"),
        (422, ActionFailed, "HTTP 422"),
    ],
)
def test_api_errors_map_to_retry_or_report(status: int, kind: type[Exception], words: str) -> None:
    from kubernetes.client.exceptions import ApiException

    error = ApiException(status=status, reason="Reason")
    error.body = '{"kind": "Status", "message": "the server says why"}'
    with pytest.raises(kind, match=words) as raised, kube_errors("scale deployment shop/ranker"):
        raise error
    assert "the server says why" in str(raised.value) and api_status(raised.value) == status


async def test_an_unreachable_api_server_is_transient() -> None:
    from kubernetes import client

    configuration = client.Configuration(host="http://127.0.0.1:9")  # discard port: refused
    configuration.retries = 0
    with client.ApiClient(configuration) as api:
        action = Scale(Scale.Params.model_validate({"type": "scale", "step": 1}), ActionContext(kube_api_client=api))
        a = alert(namespace="shop", deployment="ranker")
        with pytest.raises(TransientActionError, match="cannot reach the Kubernetes API"):
            await action.plan(a, action.target(a))


def deployment(generation: int, observed: int, replicas: int, total: int, updated: int, paused: bool = False) -> Any:
    from types import SimpleNamespace as NS

    return NS(
        metadata=NS(generation=generation),
        spec=NS(replicas=replicas, paused=paused),
        status=NS(observed_generation=observed, replicas=total, updated_replicas=updated, conditions=[]),
    )


@pytest.mark.parametrize(
    ("dep", "words"),
    [
        (deployment(3, 3, 4, 4, 4), None),
        (deployment(3, 3, 6, 4, 4), None),  # scale-up, Pods still being created: not a rollout
        (deployment(4, 3, 4, 4, 4), "not observed generation 4"),
        (deployment(3, 3, 2, 3, 1), "2 Pod(s) of an older template"),
        (deployment(5, 5, 2, 2, 0, paused=True), "(paused)"),
    ],
)
def test_rollout_in_progress(dep: Any, words: str | None) -> None:
    from actions.kube import rollout_in_progress

    reason = rollout_in_progress(dep)
    assert reason is None if words is None else words in (reason or "")
