"""``watchkeeper backtest --policy`` on a JSONL history: decisions, guards, budgets, scores, bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actions.audit import AuditRecord
from agent.cli import app
from agent.policy_backtest import PolicyBacktest, PolicySettings, run_policy_backtest
from agent.policy_backtest.labels import Incident, load_incidents, score_actions

from tests.unit.policy.policy_data import T0, write_inputs


@pytest.fixture
def no_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any Kubernetes or MLflow client made during a backtest fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a policy backtest made a client to a real system")

    from kubernetes import client

    import actions.mlflow_registry

    monkeypatch.setattr(client.ApiClient, "__init__", refuse)
    monkeypatch.setattr(client.ApiClient, "call_api", refuse)
    monkeypatch.setattr(actions.mlflow_registry.RegistryClient, "__init__", refuse)


def _job(tmp_path: Path, out: str) -> PolicyBacktest:
    policy, events, labels = write_inputs(tmp_path / "in")
    return PolicyBacktest(
        policy=(str(policy),), out=tmp_path / out, events=events, labels=labels,
        settings=PolicySettings(namespaces=frozenset({"ml-serving"})),
    )


def _decisions(records: list[AuditRecord], index: int = 0) -> list[tuple[float, str, str, str | None]]:
    return [(r.ts - T0, r.target, r.outcome, r.guard) for r in records if r.action_index == index]


def test_every_decision_and_the_guard_that_refused(tmp_path: Path, no_clients: None) -> None:
    run, md, png = run_policy_backtest(_job(tmp_path, "report"))
    main = _decisions(run.records)
    assert [(t, o, g) for _, t, o, g in main] == [
        ("deployment/ml-serving/checkout", "executed", None),
        ("deployment/ml-serving/checkout", "skipped", "cooldown"),
        ("deployment/ml-serving/checkout", "skipped", "blast-radius"),
        ("deployment/ml-serving/search", "executed", None),
    ]
    # each burst fires within its window plus `for`, and the decision is taken then, in event time
    for (ts, *_), (start, _) in zip(main, [(300, 360), (500, 560), (900, 960), (1200, 1260)], strict=True):
        assert start <= ts <= start + 20
    refused = _decisions(run.records, 1)  # refused before its target resolves: no request is made
    assert len(refused) == 4 and all(o == "skipped" and g == "namespace" for _, _, o, g in refused)
    assert run.targets.deployments["ml-serving/checkout"].replicas == 4
    assert run.targets.deployments["ml-serving/search"].replicas == 4
    text = md.read_text(encoding="utf-8")
    for row in ("| cooldown | 1 |", "| blast-radius | 1 |", "| namespace | 4 |", "| executed | 2 |"):
        assert row in text
    assert "| deployment/ml-serving/checkout | replicas 2 -> 4 |" in text
    assert png.read_bytes().startswith(b"\x89PNG")


def test_budget_use_and_fleet_budget_refusals(tmp_path: Path, no_clients: None) -> None:
    job = _job(tmp_path, "budget")
    job = PolicyBacktest(**{**job.__dict__, "settings": PolicySettings(namespaces=frozenset({"ml-serving"}), fleet_max_per_hour=1)})
    run, md, _ = run_policy_backtest(job)
    main = [(r.target, r.outcome, r.guard) for r in run.records if r.target.startswith("deployment/ml-serving/")]
    # the search scale comes 900 s after the checkout one: inside the hour, over a fleet budget of 1
    assert main[-1] == ("deployment/ml-serving/search", "skipped", "budget-fleet")
    text = md.read_text(encoding="utf-8")
    assert "| 2023-11-14 22:18:" in text or "| 1 of 3 | 1 of 1 |" in text
    assert "| 1 of 3 | 1 of 1 |" in text


def test_precision_and_recall_on_labelled_incidents(tmp_path: Path, no_clients: None) -> None:
    run, md, _ = run_policy_backtest(_job(tmp_path, "score"))
    # two actions (checkout in incident 1: right; search, unlabelled: wrong); incident 2 was refused by cooldown
    assert "| 2 | 1 | 0.50 | 2 | 1 | 0.50 |" in md.read_text(encoding="utf-8")
    incidents = load_incidents(tmp_path / "in" / "labels.csv")
    score = score_actions(run.records, incidents)
    assert (score.actions, score.right, score.precision, score.remediated, score.recall) == (2, 1, 0.5, 1, 0.5)
    # the same actions against incidents covering everything for checkout only
    wide = [Incident(T0, T0 + 2000, "checkout")]
    assert score_actions(run.records, wide).precision == 0.5
    assert score_actions(run.records, [Incident(T0, T0 + 2000)]).precision == 1.0


def test_pages_per_incident(tmp_path: Path, no_clients: None) -> None:
    _, md, _ = run_policy_backtest(_job(tmp_path, "pages"))
    text = md.read_text(encoding="utf-8")
    assert "| 2023-11-14 22:18:10 to 2023-11-14 22:19:40 | checkout | 1 | HighLatency |" in text
    assert "Pages outside every incident: 2; pages in all: 4." in text


def test_report_and_timeline_are_the_same_bytes_on_every_run(tmp_path: Path, no_clients: None) -> None:
    _, md1, png1 = run_policy_backtest(_job(tmp_path, "one"))
    _, md2, png2 = run_policy_backtest(_job(tmp_path, "two"))
    assert md1.read_bytes() == md2.read_bytes()
    assert png1.read_bytes() == png2.read_bytes()
    assert b"Software" not in png1.read_bytes() and b"matplotlib" not in png1.read_bytes()


def test_cli_policy_backtest(tmp_path: Path, no_clients: None) -> None:
    policy, events, labels = write_inputs(tmp_path / "in")
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        ["backtest", "--policy", str(policy), "--events", str(events), "--labels", str(labels),
         "--namespaces", "ml-serving", "--report-dir", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists() and (out / "timeline.png").exists()
    bad = CliRunner().invoke(app, ["backtest", "--policy", str(policy)])
    assert bad.exit_code != 0 and "exactly one of --events" in bad.output


def test_labels_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("start,end\n10,5\n", encoding="utf-8")
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="before start"):
        load_incidents(path)
    path.write_text("begin,stop\n1,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="header"):
        load_incidents(path)


def test_hostile_lines_are_counted_not_fatal_and_the_input_is_bounded(tmp_path: Path, no_clients: None) -> None:
    from agent.policy_backtest.sources import TooManyRecords, read_jsonl

    policy, events, labels = write_inputs(tmp_path / "in")
    hostile = tmp_path / "in" / "hostile.jsonl"
    huge = b'{"type": "inference", "pad": "' + b"x" * (3 * 256 * 1024) + b'"}\n'
    with hostile.open("wb") as fh:
        fh.write(b"not json\n" + huge + b'{"type": "inference", "ts": "NaN"}\n' + b"\xff\xfe\n")
        far = {"type": "inference", "ts": 1e300, "service": "checkout", "model": "m", "model_version": "7", "latency_ms": 1.0, "status": "ok"}
        fh.write(json.dumps(far).encode() + b"\n")
        fh.write(events.read_bytes())
    run, _, _ = run_policy_backtest(
        PolicyBacktest(policy=(str(policy),), out=tmp_path / "h", events=hostile, labels=labels,
                       settings=PolicySettings(namespaces=frozenset({"ml-serving"})))
    )
    assert run.skipped == {"implausible-time": 1, "invalid": 3, "too-large": 1}
    assert [r.outcome for r in run.records if r.action_index == 0] == ["executed", "skipped", "skipped", "executed"]
    # the oversized line was never held whole
    assert max(len(r.value) for r in read_jsonl(hostile)) <= 256 * 1024 + 2
    with pytest.raises(TooManyRecords, match="more than 100 events"):
        read_jsonl(events, max_records=100)
