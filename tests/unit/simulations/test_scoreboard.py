"""The remediation scoreboard: right and wrong actions, recall, recovery times, undo and verify counts, floors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.simulate.runner import ScenarioRun
from agent.simulate.scoreboard import ScoreboardSpec, load_scoreboard, score, suite_scoreboard
from simulations.expectations import Observed
from simulations.scenario import load_scenario

REPO = Path(__file__).resolve().parents[3]
START = 1_700_000_000.0


def _run(audit: list[dict[str, Any]], transitions: list[dict[str, Any]] | None = None) -> ScenarioRun:
    scenario, _ = load_scenario(REPO / "simulations" / "bad_deploy.yaml")  # bad_deploy fault at 450-690 s
    obs = Observed(start_ts=START, audit=audit, transitions=transitions or [])
    return ScenarioRun(scenario, REPO / "simulations" / "bad_deploy.yaml", observed=obs)


def _action(target: str, active_s: float, outcome: str = "dry-run", **more: Any) -> dict[str, Any]:
    return {"action": "rollback", "target": target, "outcome": outcome, "alert_active_at": START + active_s,
            "fingerprint": "fp1", "ts": START + active_s + 40, **more}


SPEC = ScoreboardSpec.model_validate(
    {"scenarios": {"bad-deploy": {"remediate": [{"fault": "bad_deploy", "target": "model/fraud-detector", "action": "rollback"}]}}}
)


def test_right_action_holds_the_floors_and_times_recovery() -> None:
    resolved = {"state": "resolved", "fingerprint": "fp1", "active_at": START + 470, "resolved_at": START + 620}
    board = score([_run([_action("model/fraud-detector", 470)], [resolved])], SPEC)
    assert (board.actions, board.right, board.wrong, board.precision, board.recall) == (1, 1, 0, 1.0, 1.0)
    row = board.rows[0]
    assert row.recovery_with_s == [170.0]  # fault start (450 s) to the triggering alert's resolve (620 s)
    assert row.recovery_without_s == [240.0]  # the fault's scripted duration (it resolved before the fault ended)
    late = {**resolved, "resolved_at": START + 750}  # 60 s after the fault's end: the scripted course includes that lag
    assert score([_run([_action("model/fraud-detector", 470)], [late])], SPEC).rows[0].recovery_without_s == [300.0]
    assert board.failures() == []
    assert "Floors held." in board.to_markdown()


@pytest.mark.parametrize(
    "action",
    [
        _action("model/ranker", 470),  # the wrong target
        _action("model/fraud-detector", 100),  # the right target, but no fault was active
        {**_action("model/fraud-detector", 470), "action": "scale"},  # the wrong kind of action
    ],
)
def test_a_wrong_action_fails_the_floors(action: dict[str, Any]) -> None:
    board = score([_run([action])], SPEC)
    assert board.wrong == 1 and board.precision == 0.0 and board.recall == 0.0
    failures = board.failures()
    assert any("wrong action" in f for f in failures) and any("precision 0.00" in f for f in failures)
    assert "**FAILED**" in "\n".join(board.to_markdown())


def test_an_action_in_a_scenario_that_declares_nothing_is_wrong() -> None:
    board = score([_run([_action("model/fraud-detector", 470)])], ScoreboardSpec())
    assert board.wrong == 1 and board.recall is None


def test_refusals_and_failures_are_not_actions_and_a_missed_incident_lowers_recall() -> None:
    audit = [_action("model/fraud-detector", 470, "skipped", guard="cooldown"), _action("model/fraud-detector", 470, "failed")]
    board = score([_run(audit)], SPEC)
    assert (board.actions, board.precision, board.recall) == (0, None, 0.0)
    assert board.failures() == ["remediation recall 0.00 is below the floor 1.00"]


def test_verify_and_undo_records_are_counted_apart() -> None:
    audit = [
        _action("model/fraud-detector", 470, "executed", id="a1"),
        {**_action("model/fraud-detector", 470, "not_recovered"), "verify_of": "a1"},
        {**_action("model/fraud-detector", 470, "executed"), "undo_of": "a1"},
        {**_action("model/fraud-detector", 470, "recovered"), "verify_of": "u1"},
    ]
    board = score([_run(audit)], SPEC)
    row = board.rows[0]
    assert (row.actions, row.undos, row.verified) == (1, 1, {"not_recovered": 1, "recovered": 1})
    assert board.to_dict()["undos"] == 1


def test_shipped_scoreboard_names_real_scenarios_and_faults() -> None:
    spec = load_scoreboard(REPO / "simulations" / "scoreboard.yaml")
    for name, entry in spec.scenarios.items():
        files = [p for p in (REPO / "simulations").glob("*.yaml") if p.name != "scoreboard.yaml"]
        scenarios = {load_scenario(p)[0].name: load_scenario(p)[0] for p in files}
        assert name in scenarios, name
        faults = {f.id for f in scenarios[name].faults}
        assert {e.fault for e in entry.remediate} <= faults


def test_a_declared_fault_the_scenario_lacks_is_an_error(tmp_path: Path) -> None:
    spec = ScoreboardSpec.model_validate({"scenarios": {"bad-deploy": {"remediate": [{"fault": "nope", "target": "x"}]}}})
    with pytest.raises(ConfigError, match="no fault 'nope'"):
        score([_run([])], spec)


def test_suite_scoreboard_only_where_a_scoreboard_file_is(tmp_path: Path) -> None:
    run = _run([])
    run.file = tmp_path / "x.yaml"
    assert suite_scoreboard([run]) is None
    (tmp_path / "scoreboard.yaml").write_text("floors: {precision: 0.5}\n")
    board = suite_scoreboard([run])
    assert board is not None and board.floors.precision == 0.5 and board.rows[0].due == 0


def test_recovery_follows_the_alert_across_an_agent_restart() -> None:
    """A restarted agent carries the alert on under a new active_at; that one's resolve ends the recovery."""
    transitions = [
        {"state": "firing", "fingerprint": "fp1", "active_at": START + 470},
        {"state": "resolved", "fingerprint": "fp1", "active_at": START + 520, "resolved_at": START + 700},
        {"state": "resolved", "fingerprint": "other", "active_at": START + 470, "resolved_at": START + 480},
    ]
    row = score([_run([_action("model/fraud-detector", 470)], transitions)], SPEC).rows[0]
    assert row.recovery_with_s == [250.0]
