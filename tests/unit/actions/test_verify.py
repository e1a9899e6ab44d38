"""Verify after act, with the recording kind: recovered, not recovered -> page + undo -> verified, inconclusive.

Fast and broker-free; the same paths run against the real Kubernetes API server and MLflow in
tests/integration/test_verify_undo.py.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from actions.audit import AuditRecord
from actions.verify import Verifier, Watch, describe, verify_fields
from agent.model import Alert, AlertState
from agent.runtime.remediator import NOT_RECOVERED_ALERT
from tests.unit.actions.test_remediator import Setup, alert, rules_with

T0 = 1_799_999_000.0  # the alert's active_at and fired_at: the action's event time


def snapshot(at: float, last_event_at: float | None, *, state: AlertState = AlertState.FIRING, active_at: float = T0) -> Alert:
    """A re-send (or the RESOLVED transition) of the test alert, stamped as the pipeline stamps it."""
    base = alert(active_at)
    resolved_at = at if state is AlertState.RESOLVED else None
    return replace(base, state=state, at=at, last_event_at=last_event_at, resolved_at=resolved_at, value=950.0)


class Pages:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def __call__(self, alert: Alert) -> None:
        self.sent.append(alert)


def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, *, quiet_s: float = 300.0) -> tuple[Setup, Pages]:
    pages = Pages()
    s = Setup(rules_with(tmp_path, monkeypatch, entry), page=pages, verifier=Verifier(quiet_s=quiet_s))
    return s, pages


def by_outcome(s: Setup, outcome: str) -> list[AuditRecord]:
    return [r for r in s.topic.records if r.outcome == outcome]


async def test_an_alert_that_resolves_in_time_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, pages = setup(tmp_path, monkeypatch, "mode: enforce, verify_within: 5m, undo: true")
    await s.remediator.handle([alert(T0)])
    executed = by_outcome(s, "executed")[0]
    assert executed.verify == {"within": 300.0, "from": T0, "until": T0 + 300, "undo": True, "escalate": True}
    await s.remediator.verify([snapshot(T0 + 60, T0 + 59)])  # still firing, inside the window: no verdict yet
    assert s.topic.outcomes() == ["executed"]
    await s.remediator.verify([snapshot(T0 + 120, T0 + 118, state=AlertState.RESOLVED)])
    assert s.topic.outcomes() == ["executed", "recovered"]
    verification = s.topic.records[-1]
    assert verification.verify_of == executed.id and verification.undo_of is None
    assert "resolved at" in verification.reason and "2m after the action" in verification.reason
    assert s.sample("watchkeeper_action_verifications_total", action="recording", outcome="recovered") == 1
    assert pages.sent == [] and s.system.undone == []
    assert AuditRecord.from_json(verification.to_json()) == verification  # the new keys survive JSON


async def test_still_firing_after_the_window_pages_undoes_and_verifies_the_undo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, pages = setup(tmp_path, monkeypatch, "mode: enforce, verify_within: 5m, undo: true, cooldown: 1h")
    await s.remediator.handle([alert(T0)])
    executed = by_outcome(s, "executed")[0]
    await s.remediator.verify([snapshot(T0 + 299, T0 + 290)])
    assert s.topic.outcomes() == ["executed"]
    s.clock.now += 300  # wall time moves too; the verdict does not depend on it
    await s.remediator.verify([snapshot(T0 + 300, T0 + 299)])
    assert s.topic.outcomes() == ["executed", "not_recovered", "executed"]
    verdict, undo = s.topic.records[1], s.topic.records[2]
    assert verdict.verify_of == executed.id
    assert "not recovered by" in verdict.reason and "still firing" in verdict.reason
    # the undo: its own record, linked, through the guards (a 1h cooldown on the action does not hold it back)
    assert undo.undo_of == executed.id and undo.action == "recording"
    assert [g.name for g in undo.guards if not g.ok] == []
    assert {"cooldown", "budget-target", "budget-fleet", "namespace", "lease"} <= {g.name for g in undo.guards}
    assert s.system.undone == [(undo.decision_key, "deployment/api")]
    assert undo.verify is not None and undo.verify["undo"] is False  # an undo is never undone
    # the page: rule, action and target in labels, the evidence in words
    assert len(pages.sent) == 1
    page = pages.sent[0]
    assert page.labels["alertname"] == NOT_RECOVERED_ALERT and page.state is AlertState.FIRING
    assert (page.labels["rule"], page.labels["action"], page.labels["target"]) == ("g/Hot", "recording", "deployment/api")
    assert "not recovered by" in page.annotations["summary"] and page.at == T0 + 300
    # the annotation on the alert itself
    assert s.annotations[-1][:2] == ("g/Hot", ("api",))
    assert "not recovered by" in s.annotations[-1][2]["remediation"]
    # the undo is verified in turn; still firing: paged, never undone again
    await s.remediator.verify([snapshot(T0 + 600, T0 + 599)])
    assert s.topic.outcomes() == ["executed", "not_recovered", "executed", "not_recovered"]
    assert s.topic.records[-1].verify_of == undo.id and s.topic.records[-1].undo_of == executed.id
    assert len(s.system.undone) == 1 and len(pages.sent) == 2 and pages.sent[1].labels.get("undo") == "true"
    await s.remediator.verify([snapshot(T0 + 900, T0 + 899)] * 2)  # later re-sends: nothing more
    assert len(s.topic.records) == 4
    assert s.sample("watchkeeper_action_verifications_total", action="recording", outcome="not_recovered") == 2


async def test_low_traffic_is_inconclusive_never_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, pages = setup(tmp_path, monkeypatch, "mode: enforce, verify_within: 5m, undo: true")
    await s.remediator.handle([alert(T0)])
    # no event of the series after the action: the alert still "fires" on old evidence
    await s.remediator.verify([snapshot(T0 + 310, T0 - 5)])
    assert s.topic.outcomes() == ["executed", "inconclusive"]
    assert "no traffic" in s.topic.records[-1].reason
    assert s.system.undone == [] and pages.sent == []
    assert s.sample("watchkeeper_action_verifications_total", action="recording", outcome="inconclusive") == 1


async def test_an_alert_resolved_by_a_quiet_series_is_inconclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, _ = setup(tmp_path, monkeypatch, "mode: enforce, verify_within: 10m, undo: true", quiet_s=120.0)
    await s.remediator.handle([alert(T0)])
    # one event after the action, then silence: staleness resolved it, not a recovery
    await s.remediator.verify([snapshot(T0 + 200, T0 + 30, state=AlertState.RESOLVED)])
    assert s.topic.outcomes() == ["executed", "inconclusive"]
    assert "went quiet" in s.topic.records[-1].reason


async def test_snapshots_without_stamps_are_inconclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, _ = setup(tmp_path, monkeypatch, "mode: enforce, undo: true")
    await s.remediator.handle([alert(T0)])
    await s.remediator.verify([replace(alert(T0), state=AlertState.RESOLVED, resolved_at=T0 + 30)])
    assert s.topic.outcomes() == ["executed", "inconclusive"] and s.system.undone == []


async def test_resolved_after_the_window_is_not_recovered_and_not_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, pages = setup(tmp_path, monkeypatch, "mode: enforce, verify_within: 1m, undo: true")
    await s.remediator.handle([alert(T0)])
    await s.remediator.verify([snapshot(T0 + 90, T0 + 90, state=AlertState.RESOLVED)])
    assert s.topic.outcomes() == ["executed", "not_recovered"]
    assert s.system.undone == []  # it resolved: undoing now would only add risk
    assert len(pages.sent) == 1


async def test_dry_run_verifies_what_would_have_been_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, pages = setup(tmp_path, monkeypatch, "mode: dry-run, verify: true, undo: true")
    await s.remediator.handle([alert(T0)])
    assert s.topic.outcomes() == ["dry-run"] and s.topic.records[0].verify is not None
    await s.remediator.verify([snapshot(T0 + 300, T0 + 299)])
    assert s.topic.outcomes() == ["dry-run", "not_recovered"]
    assert s.topic.records[-1].mode == "dry-run" and "would have" in s.topic.records[-1].reason
    assert s.system.undone == [] and s.system.applies == [] and pages.sent == []


async def test_dry_run_by_default_and_verify_false_arm_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for entry in ("mode: dry-run", "mode: enforce, verify: false"):
        s, _ = setup(tmp_path, monkeypatch, entry)
        await s.remediator.handle([alert(T0)])
        assert s.topic.records[0].verify is None and not s.remediator.verifying


async def test_the_undo_is_guarded_by_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, pages = setup(tmp_path, monkeypatch, "mode: enforce, undo: true, max_per_hour: 1")
    await s.remediator.handle([alert(T0)])
    await s.remediator.verify([snapshot(T0 + 300, T0 + 299)])
    assert s.topic.outcomes() == ["executed", "not_recovered", "skipped"]
    skipped = s.topic.records[-1]
    assert skipped.guard == "budget-target" and skipped.undo_of == s.topic.records[0].id
    assert s.system.undone == [] and len(pages.sent) == 1


async def test_approve_mode_does_not_undo_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, _ = setup(tmp_path, monkeypatch, "mode: approve, undo: true")
    await s.remediator.handle([alert(T0)])
    request = s.topic.records[0]
    await s.remediator.answer(request.id, by="alice", approve=True)
    await s.remediator.sweep()
    assert s.topic.outcomes() == ["pending-approval", "approved", "executed"]
    await s.remediator.verify([snapshot(T0 + 300, T0 + 299)])
    assert s.topic.outcomes()[-2:] == ["not_recovered", "skipped"]
    assert s.topic.records[-1].guard == "approval" and s.system.undone == []


async def test_a_redelivered_batch_gives_one_verdict_and_one_undo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, pages = setup(tmp_path, monkeypatch, "mode: enforce, undo: true")
    await s.remediator.handle([alert(T0)])
    batch = [snapshot(T0 + 300, T0 + 299), snapshot(T0 + 301, T0 + 300)]
    await s.remediator.verify(batch)
    await s.remediator.verify(batch)
    assert s.topic.outcomes() == ["executed", "not_recovered", "executed"]
    assert len(s.system.undone) == 1 and len(pages.sent) == 1


async def test_a_restarted_agent_re_arms_its_open_verifications_from_the_audit_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = rules_with(tmp_path, monkeypatch, "mode: enforce, undo: true")
    first = Setup(rules)
    await first.remediator.handle([alert(T0)])
    done = first.topic.records[0]
    settled = Setup(rules)
    for record in first.topic.records:
        settled.remediator.observe(record)
    assert settled.remediator.verifying
    other = Setup(rules, agent="agent-b")  # another agent's actions are its own to verify
    other.remediator.observe(done)
    assert not other.remediator.verifying
    await settled.remediator.verify([snapshot(T0 + 100, T0 + 99, state=AlertState.RESOLVED)])
    assert settled.topic.outcomes() == ["recovered"] and settled.topic.records[0].verify_of == done.id
    again = Setup(rules)  # after the verdict: nothing left open
    for record in [done, settled.topic.records[0]]:
        again.remediator.observe(record)
    assert not again.remediator.verifying


async def test_a_watch_without_news_gives_up_inconclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, _ = setup(tmp_path, monkeypatch, "mode: enforce, undo: true, verify_within: 5m")
    await s.remediator.handle([alert(T0)])
    stranger = replace(snapshot(T0 + 300 + 900, T0 + 1199), fingerprint="fp-other", series=("other",))
    await s.remediator.verify([stranger])
    assert s.topic.outcomes() == ["executed", "inconclusive"]
    assert "no snapshot of the alert" in s.topic.records[-1].reason and s.system.undone == []


def test_watch_of_rejects_bad_verify_objects_and_never_undoes_an_undo() -> None:
    base = AuditRecord(
        decision_key="k", rule_id="g/A", alertname="A", fingerprint="f", alert_active_at=T0, action="scale",
        action_index=0, target="deployment/ns/api", mode="enforce", outcome="executed", ts=T0,
        before={"replicas": 3}, after={"replicas": 6}, verify=verify_fields(T0, 300, undo=True, escalate=True),
    )
    watch = Watch.of(base)
    assert watch is not None and watch.undo and watch.until == T0 + 300
    undo = Watch.of(replace(base, undo_of="x"))
    assert undo is not None and not undo.undo
    for bad in ({"from": "x"}, {"from": T0, "until": math.nan}, {"from": T0, "until": T0 - 1}, {}):
        assert Watch.of(replace(base, verify=bad)) is None
    assert Watch.of(replace(base, outcome="failed")) is None
    assert describe(base) == "scaled api 3 -> 6"
    assert describe(replace(base, action="rollback", before={"version": "3"}, after={"version": "2"}, target="model/fraud")) == (
        "rolled back fraud 3 -> 2"
    )


def test_bad_stamps_on_the_wire_read_as_unstamped() -> None:
    data = snapshot(T0 + 1, T0).to_dict()
    assert (data["at"], data["last_event_at"]) == (T0 + 1, T0)
    for bad in ("soon", None, True, [1], float("inf")):
        again = Alert.from_dict({**data, "at": bad, "last_event_at": bad})
        assert again.at is None and again.last_event_at is None
    assert "at" not in alert(T0).to_dict()  # unstamped snapshots keep the old shape
