"""Backtests: the same verdicts and alerts as the agent, from CSV or JSONL, fast."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.backtest import backtest_file, rule_for_kind
from agent.cli import app
from agent.errors import ConfigError
from agent.model import AlertState


def write_csv(path, values, step=60, header=True):
    lines = ["timestamp,value"] if header else []
    lines += [f"2026-01-01 00:{i // 60:02d}:{i % 60:02d},{v}" if step == 1 else f"{1_700_000_000 + i * step},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def test_csv_series_fires_and_resolves_with_for(tmp_path):
    f = tmp_path / "s.csv"
    write_csv(f, [10] * 10 + [99] * 10 + [10] * 10)
    rule = rule_for_kind("threshold", {"op": ">", "threshold": 50.0}, for_s=120.0)
    result = backtest_file(rule, f)
    assert result.rows == 30
    states = [(a.state, a.resolved_at if a.state is AlertState.RESOLVED else a.fired_at) for a in result.alerts]
    assert states == [(AlertState.FIRING, 1_700_000_000 + 12 * 60), (AlertState.RESOLVED, 1_700_000_000 + 20 * 60)]


def test_naive_timestamps_are_utc_and_rows_are_written(tmp_path):
    f = tmp_path / "s.csv"
    write_csv(f, [1, 2, 3], step=1)
    out = tmp_path / "out.csv"
    rule = rule_for_kind("threshold", {"op": ">", "threshold": 2.5})
    with out.open("w") as fh:
        backtest_file(rule, f, fh)
    rows = out.read_text().splitlines()
    assert rows[0] == "timestamp,series,value,score,active,alert_state"
    assert rows[1].startswith("1767225600,s,1,0,0,inactive")
    assert rows[3].endswith(",1,1,firing")


def test_jsonl_events_through_a_rules_file(tmp_path):
    events = tmp_path / "e.jsonl"
    lines = []
    for i in range(40):
        svc = "a" if i % 2 else "b"
        lines.append(json.dumps({"type": "inference", "ts": i, "service": svc, "model": "m", "model_version": "1", "latency_ms": 900 if svc == "a" else 10, "status": "ok"}))
    events.write_text("\n".join(lines + ["{bad"]) + "\n")
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: Slow\n    source: inference\n    by: [service]\n"
        "    detector: {kind: threshold, field: latency_ms, op: '>', threshold: 500}\n    for: 5s\n"
    )
    result = CliRunner().invoke(app, ["backtest", str(events), "--rules", str(rules), "--alert", "Slow"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert summary["rows"] == 40 and summary["skipped"] == 1
    assert [(a["state"], a["labels"]["service"], a["fired_at"]) for a in summary["alerts"]] == [("firing", "a", 7.0)]


def test_unknown_kind_and_bad_params_fail_cleanly():
    with pytest.raises(ConfigError, match="unknown detector"):
        rule_for_kind("nope", {})
    result = CliRunner().invoke(app, ["backtest", "x.csv", "--kind", "threshold", "--param", "agg=median"])
    assert result.exit_code == 1
    assert "agg 'median'" in result.output and "Traceback" not in result.output


def test_bad_csv_row_names_file_and_line(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("timestamp,value\n2026-01-01 00:00:00,1\n2026-01-01 00:01:00,oops\n")
    with pytest.raises(ConfigError, match=r"s.csv:3"):
        backtest_file(rule_for_kind("threshold", {}), f)
