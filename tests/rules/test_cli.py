"""``watchkeeper rules check``, ``rules test`` and ``schema``, driven through the CLI.

``test_shipped_rule_tests_pass`` is what keeps ``rules/`` tested: it runs
``rules/tests/*.test.yaml`` exactly as CI or an SRE would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app

ROOT = Path(__file__).parents[2]
RULES = ROOT / "rules"
TESTDATA = Path(__file__).parent / "testdata"

runner = CliRunner()
_POSITION = re.compile(r"^(?P<file>\S+\.yaml):(?P<line>\d+):(?P<col>\d+): ", re.M)


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    # a user's mistake exits 1 through typer.Exit; anything else would be a bug
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


# --- rules check ---------------------------------------------------------------------


def test_check_shipped_rules_succeeds() -> None:
    result = _invoke("rules", "check", RULES)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"SUCCESS: \d+ rules found in \d+ file\(s\)\n", result.stdout)
    assert int(result.stdout.split()[1]) >= 2


def test_check_good_files_succeeds() -> None:
    result = _invoke("rules", "check", *sorted(TESTDATA.glob("*.good.yaml")))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("SUCCESS: ")
    assert f"in {len(list(TESTDATA.glob('*.good.yaml')))} file(s)" in result.stdout


def test_check_bad_file_fails_with_positions() -> None:
    path = TESTDATA / "many_problems.bad.yaml"
    result = _invoke("rules", "check", path)
    assert result.exit_code == 1
    assert "SUCCESS" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "FAILED:"
    positions = [m.groupdict() for m in _POSITION.finditer(result.stderr)]
    assert len(positions) == len(lines) - 1 == 8  # every problem, one line each
    assert {p["file"] for p in positions} == {str(path)}
    assert f'{path}:14:26: group "serving", rule 2 "HighLatency": unknown detector "treshold" (did you mean "threshold"?)' in lines


def test_check_fails_when_any_file_is_bad() -> None:
    result = _invoke("rules", "check", TESTDATA / "inference.good.yaml", TESTDATA / "unknown_detector.bad.yaml")
    assert result.exit_code == 1
    assert "FAILED:" in result.stderr
    assert f"{TESTDATA / 'unknown_detector.bad.yaml'}:7:26: " in result.stderr


@pytest.mark.parametrize("name", ["yaml_syntax.bad.yaml", "unknown_tag.bad.yaml", "not_utf8.bad.yaml", "empty.bad.yaml"])
def test_check_never_prints_a_traceback(name: str) -> None:
    result = _invoke("rules", "check", TESTDATA / name)
    assert result.exit_code == 1
    assert result.stderr.startswith("FAILED:\n")
    assert str(TESTDATA / name) in result.stderr


def test_check_missing_file() -> None:
    result = _invoke("rules", "check", TESTDATA / "no_such_file.yaml")
    assert result.exit_code == 1
    assert "cannot read file" in result.stderr


# --- rules test ----------------------------------------------------------------------


def test_shipped_rule_tests_pass() -> None:
    files = sorted((RULES / "tests").glob("*.test.yaml"))
    assert files, "rules/tests/ holds no rule tests"
    result = _invoke("rules", "test", *files)
    assert result.exit_code == 0, result.output
    for file in files:
        assert f"Unit Testing: {file}" in result.stdout
    assert result.stdout.count("SUCCESS") == len(files)
    assert "FAILED" not in result.output


def test_passing_rule_test() -> None:
    result = _invoke("rules", "test", TESTDATA / "equals.test.yaml")
    assert result.exit_code == 0, result.output
    assert "SUCCESS (1 groups, 2 cases)" in result.stdout


def test_wrong_expectation_prints_exp_and_got() -> None:
    path = TESTDATA / "wrong_expectation.test.yaml"
    result = _invoke("rules", "test", path)
    assert result.exit_code == 1
    err = result.stderr.splitlines()
    assert err[0] == "  FAILED:"
    assert err[1] == f'{path}:11:9: group 1 "all requests fail": alertname ErrorRatio, time 1m30s:'
    exp, got = err[2], err[3]
    assert exp.startswith("    exp: ") and got.startswith("    got: ")
    # side by side: the same layout, so the one differing label lines up
    assert '"severity": "ticket"' in exp and '"severity": "page"' in got
    assert exp.index('"severity"') == got.index('"severity"')
    assert "annotations=" not in exp  # none were expected, so none are compared


def test_one_failing_file_fails_the_run_but_every_file_runs() -> None:
    result = _invoke("rules", "test", TESTDATA / "wrong_expectation.test.yaml", TESTDATA / "equals.test.yaml")
    assert result.exit_code == 1
    assert "SUCCESS (1 groups, 2 cases)" in result.stdout
    assert "exp: " in result.stderr


@pytest.mark.parametrize(
    ("name", "line", "fragment"),
    [
        ("bad_notation.test.yaml", 8, "values.status: 'error+1x3': only numbers can have a step"),
        ("invalid_event.test.yaml", 6, "step 6: invalid inference event: inference.status: Input should be 'ok' or 'error'"),
    ],
)
def test_broken_test_file_fails_with_its_position(name: str, line: int, fragment: str) -> None:
    path = TESTDATA / name
    result = _invoke("rules", "test", path)
    assert result.exit_code == 1
    assert "  FAILED:" in result.stderr
    assert any(ln.startswith(f"{path}:{line}:") and fragment in ln for ln in result.stderr.splitlines()), result.stderr


def test_rule_test_with_bad_rule_file_reports_the_rule_file(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text((TESTDATA / "unknown_detector.bad.yaml").read_text())
    (tmp_path / "r.test.yaml").write_text("rule_files: [r.yaml]\ntests: []\n")
    result = _invoke("rules", "test", tmp_path / "r.test.yaml")
    assert result.exit_code == 1
    assert f"{tmp_path / 'r.yaml'}:7:26: " in result.stderr


def test_rule_test_with_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "t.test.yaml"
    path.write_text("rule_files: []\ntests:\n  - interval: 1s\n    input_event: []\n")
    result = _invoke("rules", "test", path)
    assert result.exit_code == 1
    assert f"{path}:4:" in result.stderr
    assert "input_event" in result.stderr


# --- schema --------------------------------------------------------------------------


def test_schema_covers_every_source() -> None:
    result = _invoke("schema")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["discriminator"]["propertyName"] == "type"
    assert set(doc["discriminator"]["mapping"]) == {"inference", "llm", "gpu", "retrieval", "feedback"}
    refs = {ref["$ref"] for ref in doc["oneOf"]}
    assert refs == set(doc["discriminator"]["mapping"].values())
    for ref in refs:
        name = ref.rsplit("/", 1)[-1]
        assert name in doc["$defs"]
    assert doc["$schema"].startswith("https://json-schema.org/")


def test_schema_of_one_source() -> None:
    result = _invoke("schema", "--source", "llm")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"prompt_tokens", "completion_tokens", "tenant"} <= set(doc["properties"])
    assert "prompt_tokens" in doc["required"]
    assert doc["properties"]["type"].get("const") == "llm" or doc["properties"]["type"].get("enum") == ["llm"]


def test_schema_unknown_source() -> None:
    result = _invoke("schema", "--source", "kafka")
    assert result.exit_code == 1
    assert "unknown source 'kafka'" in result.stderr
