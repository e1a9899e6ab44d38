"""Expectation checking on hand-made observations: each kind passes and fails for the right reason."""

from __future__ import annotations

from typing import Any

from simulations.expectations import Observed, Page, check
from simulations.scenario import Scenario

T0 = 1_000_000.0


def scenario(*expect: dict[str, Any], **more: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "t",
            "duration_s": 1000,
            "fleet": {"inference": [{"service": "a", "model": "m"}]},
            "faults": [{"kind": "latency_spike", "where": {"service": "a"}, "start_s": 400, "duration_s": 100}],
            "expect": list(expect),
        }
        | more
    )


def alert(state: str, name: str, at_s: float, fp: str = "f1", active_s: float | None = None, **labels: str) -> dict[str, Any]:
    active = T0 + (active_s if active_s is not None else at_s)
    return {
        "state": state,
        "fingerprint": fp,
        "labels": {"alertname": name, **labels},
        "active_at": active,
        "fired_at": T0 + at_s if state == "firing" else None,
        "resolved_at": T0 + at_s if state == "resolved" else None,
    }


def results(s: Scenario, **obs: Any) -> dict[str, tuple[bool, str]]:
    return {r.name: (r.ok, r.detail) for r in check(s, Observed(start_ts=T0, **obs))}


def test_alert_fires_and_resolves_in_time() -> None:
    s = scenario({"alert": {"name": "Lat", "labels": {"service": "a"}, "fires_within_s": 60, "resolves_within_s": 120}})
    got = results(s, transitions=[alert("firing", "Lat", 430, service="a"), alert("resolved", "Lat", 590, active_s=430, service="a")])
    assert got["alert Lat{service=a}"] == (True, "fired 30 s after latency_spike started; resolved 90 s after it ended")
    assert got["steady state (0-400 s): no alerts"][0]


def test_late_detection_and_missing_resolution_fail_with_reasons() -> None:
    s = scenario({"alert": {"name": "Lat", "fires_within_s": 20, "resolves_within_s": 120}})
    ok, detail = results(s, transitions=[alert("firing", "Lat", 430)])["alert Lat{}"]
    assert not ok
    assert "fired 30 s after latency_spike started, later than 20 s" in detail
    assert "never resolved" in detail


def test_alert_that_never_fires_names_what_did() -> None:
    s = scenario({"alert": {"name": "Lat", "fires_within_s": 60}})
    ok, detail = results(s, transitions=[alert("firing", "Other", 450)])["alert Lat{}"]
    assert not ok and detail == "never fired (alerts that did fire: Other)"


def test_steady_state_alerts_and_actions_fail() -> None:
    s = scenario({"no_event_lost": True})
    got = results(
        s,
        transitions=[alert("firing", "Noise", 100)],
        audit=[{"action": "scale", "outcome": "dry-run", "alert_active_at": T0 + 90}],
        missing=0,
        produced=10,
    )
    assert got["steady state (0-400 s): no alerts"] == (False, "fired during the steady state: Noise at 100 s")
    assert not got["steady state (0-400 s): no actions"][0]
    assert got["no event lost"] == (True, "all 10 produced events processed")


def test_action_exactly_once() -> None:
    s = scenario({"action": {"type": "rollback", "target": "model/m", "exactly": 1}})
    record = {"action": "rollback", "target": "model/m", "outcome": "dry-run", "alert_active_at": T0 + 450, "ts": 5.0}
    assert results(s, audit=[record])["action rollback on model/m (executed|dry-run)"][0]
    ok, detail = results(s, audit=[record, record | {"outcome": "executed"}])["action rollback on model/m (executed|dry-run)"]
    assert not ok and "happened 2 time(s), expected exactly 1 (dry-run: 1, executed: 1)" == detail
    ok, detail = results(s, audit=[record | {"outcome": "failed"}])["action rollback on model/m (executed|dry-run)"]
    assert not ok and "failed: 1" in detail


def test_page_after_an_outage_and_duplicates() -> None:
    s = scenario(
        {"page": {"alert": "Lat", "after_fault": "am", "within_wall_s": 10}},
        {"no_duplicate_page": True},
        speed=10,
        alertmanager=True,
        faults=[
            {"kind": "latency_spike", "start_s": 400, "duration_s": 100},
            {"id": "am", "kind": "alertmanager_down", "start_s": 390, "duration_s": 100},
        ],
    )
    page = Page(wall=105.0, status="firing", alertname="Lat", labels={"service": "a"})
    got = results(s, pages=[page], infra_wall={"am": (90.0, 100.0)}, pages_via_alertmanager=True)
    assert got["page Lat after am"] == (True, "arrived 5.0 wall s after am ended (held back 10.0 s)")
    assert got["no duplicate page"][0]
    early = Page(wall=95.0, status="firing", alertname="Lat", labels={"service": "a"})
    got = results(s, pages=[early, page], infra_wall={"am": (90.0, 100.0)}, pages_via_alertmanager=True)
    assert not got["page Lat after am"][0] and "before am ended" in got["page Lat after am"][1]
    assert not got["no duplicate page"][0]


def test_only_expected_alerts() -> None:
    s = scenario({"alert": {"name": "Lat"}}, {"only_expected_alerts": {"allow": ["Burn"]}})
    got = results(s, transitions=[alert("firing", "Lat", 450), alert("firing", "Burn", 450, fp="f2"), alert("firing", "Drift", 460, fp="f3")])
    assert got["only expected alerts"] == (False, "unexpected alert(s) fired: Drift")


def test_action_without_its_target_expects_the_audited_failure_and_with_it_the_execution() -> None:
    s = scenario({"action": {"type": "scale", "outcome": ["executed"], "needs": "kubernetes", "without_target": ["failed"]}})
    failed = {"action": "scale", "outcome": "failed", "alert_active_at": T0 + 450, "attempts": 1}
    ok, detail = results(s, audit=[failed])["action scale (failed)"]
    assert ok and detail == "happened 1 time(s) (failed: 1; no kubernetes configured)"
    assert not results(s, audit=[failed], targets=frozenset({"kubernetes"}))["action scale (executed)"][0]


def test_action_min_attempts_proves_the_retry() -> None:
    s = scenario({"action": {"type": "scale", "outcome": ["executed"], "min_attempts": 2}})
    once = {"action": "scale", "outcome": "executed", "alert_active_at": T0 + 450, "attempts": 1}
    ok, detail = results(s, audit=[once])["action scale (executed)"]
    assert not ok and detail == "took [1] attempt(s), expected at least 2 (a retried call)"
    assert results(s, audit=[once | {"attempts": 3}])["action scale (executed)"][0]


def test_alert_evidence_must_be_in_its_annotations() -> None:
    s = scenario({"alert": {"name": "Drift", "fires_within_s": 60, "evidence": ["lost mass", "moved"]}})
    with_evidence = alert("firing", "Drift", 430) | {"annotations": {"description": "moved 2.1 sd; neighbourhoods that lost mass: n3"}}
    ok, detail = results(s, transitions=[with_evidence])["alert Drift{}"]
    assert ok and "annotations carry 'lost mass', 'moved'" in detail
    bare = alert("firing", "Drift", 430) | {"annotations": {"summary": "drifted"}}
    ok, detail = results(s, transitions=[bare])["alert Drift{}"]
    assert not ok and detail == "its annotations lack 'lost mass', 'moved'"
    ok, _ = results(s, transitions=[alert("firing", "Drift", 430)])["alert Drift{}"]  # no annotations at all
    assert not ok
