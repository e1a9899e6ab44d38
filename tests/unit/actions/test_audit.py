"""The audit record keeps exactly the documented shape, and decision keys survive JSON."""

from __future__ import annotations

import json

import pytest

from actions.audit import AuditRecord, GuardResult, answer_request, decision_key

DOCUMENTED_KEYS = [
    "id", "decision_key", "ts", "rule_id", "alertname", "fingerprint", "alert_active_at", "labels", "action",
    "action_index", "target", "mode", "outcome", "guard", "guards", "before", "after", "reason", "attempts",
    "agent", "request_id",
]


def record(**more: object) -> AuditRecord:
    fields: dict[str, object] = dict(
        decision_key=decision_key("g/A", "abc", 1_800_000_000.125, 0, "deployment/ns/api"),
        rule_id="g/A", alertname="A", fingerprint="abc", alert_active_at=1_800_000_000.125, action="scale",
        action_index=0, target="deployment/ns/api", mode="enforce", outcome="executed", ts=1_800_000_060.5,
        labels={"alertname": "A", "service": "api"},
        guards=(GuardResult("cooldown", True, "no earlier scale"),),
        before={"replicas": 2}, after={"replicas": 3}, reason="scale 2 -> 3", attempts=1, agent="agent-0",
    )
    fields.update(more)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_json_has_exactly_the_documented_keys_in_order() -> None:
    data = json.loads(record().to_json())
    assert list(data) == DOCUMENTED_KEYS
    assert data["guards"] == [{"name": "cooldown", "ok": True, "detail": "no earlier scale"}]
    assert data["guard"] is None and data["request_id"] is None
    assert len(data["id"]) == 32 and len(data["decision_key"]) == 64


def test_round_trip() -> None:
    original = record(outcome="skipped", guard="cooldown")
    assert AuditRecord.from_json(original.to_json()) == original


def test_decision_key_is_stable_through_a_json_round_trip_and_names_the_incident() -> None:
    active_at = json.loads(json.dumps({"t": 1_764_064_800.123456789}))["t"]
    assert decision_key("g/A", "f", active_at, 0, "t") == decision_key("g/A", "f", 1_764_064_800.123456789, 0, "t")
    keys = {
        decision_key("g/A", "f", 1.0, 0, "t"),
        decision_key("g/A", "f", 2.0, 0, "t"),  # a new incident
        decision_key("g/A", "f", 1.0, 1, "t"),  # another entry
        decision_key("g/A", "f", 1.0, 0, "u"),  # another target
        decision_key("g/B", "f", 1.0, 0, "t"),
    }
    assert len(keys) == 5


def test_states_that_cannot_be_json_become_null_or_text() -> None:
    data = json.loads(record(after={"ratio": float("nan"), "when": object.__new__(object), "list": (1, 2)}).to_json())
    assert data["after"]["ratio"] is None and data["after"]["list"] == [1, 2]
    assert isinstance(data["after"]["when"], str)


@pytest.mark.parametrize(("field", "value"), [("outcome", "done"), ("mode", "yolo")])
def test_unknown_outcome_or_mode_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        record(**{field: value})


@pytest.mark.parametrize("value", [b"", b"[]", b"{}", b'{"id": "x"}', b"not json"])
def test_not_a_record(value: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        AuditRecord.from_json(value)


def test_answers_to_a_request() -> None:
    request = record(outcome="pending-approval", mode="approve", after={"replicas": 3})
    approved = answer_request(request, by="alice", approve=True, ts=2e9, reason="go")
    assert (approved.outcome, approved.guard, approved.request_id, approved.agent) == ("approved", None, request.id, "alice")
    assert approved.decision_key == request.decision_key and approved.id != request.id
    assert approved.reason == "approved by alice: go"
    rejected = answer_request(request, by="bob", approve=False, ts=2e9)
    assert (rejected.outcome, rejected.guard, rejected.reason) == ("skipped", "approval", "rejected by bob")
    expired = answer_request(request, by="agent-0", approve=False, ts=2e9, outcome="expired")
    assert (expired.outcome, expired.guard, expired.reason) == ("expired", "approval", "not approved in time")
