"""``run_test_file``: promtool's rule-test semantics on small files written per test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.errors import RuleError
from agent import ruletest
from agent.ruletest import run_test_file

RULES = """
groups:
  - name: t
    rules:
      - alert: Slow
        source: inference
        by: [service]
        detector: {kind: threshold, field: latency_ms, op: ">", threshold: 500}
        for: 10s
        keep_firing_for: 5s
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.service }} at {{ $value }} ms"
      - alert: Exactly3
        source: inference
        by: [service]
        detector: {kind: threshold, field: latency_ms, agg: count, window_s: 100s, op: "==", threshold: 3}
      - alert: Spike
        source: inference
        by: [service]
        detector: {kind: threshold, field: latency_ms, agg: max, window_s: 10s, op: ">", threshold: 500}
        keep_firing_for: 10s
"""

SERIES = """
    input_events:
      - source: inference
        fields: {{service: a, model: m, model_version: "1", status: ok}}
        values: {{latency_ms: '{values}'}}
"""


def _run(tmp_path: Path, cases: str, values: str = "900x59", interval: str = "1s", start: float = 0) -> ruletest.TestFileResult:
    """One group: service a's latencies ``values`` every ``interval``, then ``cases``."""
    (tmp_path / "rules.yaml").write_text(RULES)
    body = f"rule_files: [rules.yaml]\ntests:\n  - interval: {interval}\n    start: {start}\n"
    body += textwrap.indent(textwrap.dedent(SERIES.format(values=values)).strip("\n"), "    ") + "\n"
    body += "    alert_rule_test:\n" + textwrap.indent(textwrap.dedent(cases).strip("\n"), "      ") + "\n"
    path = tmp_path / "t.test.yaml"
    path.write_text(body)
    return run_test_file(path)


SLOW_A = "- exp_labels: {service: a, severity: page}"


def _case(at: str, alert: str = "Slow", *expected: str) -> str:
    out = f"- eval_time: {at}\n  alertname: {alert}\n"
    if expected:
        out += "  exp_alerts:\n" + "".join(textwrap.indent(e, "    ") + "\n" for e in expected)
    else:
        out += "  exp_alerts: []\n"
    return out


def test_pending_alert_is_not_listed_before_for(tmp_path: Path) -> None:
    # slow from t=0 with for: 10s: pending at 9s, so nothing fires yet
    assert _run(tmp_path, _case("9s")).ok
    failed = _run(tmp_path, _case("9s", "Slow", SLOW_A))
    assert not failed.ok
    assert "got: [] (no alert)" in failed.failures[0]


def test_alert_fires_at_exactly_for(tmp_path: Path) -> None:
    result = _run(tmp_path, _case("10s", "Slow", SLOW_A))
    assert result.ok, result.failures
    assert (result.groups, result.cases) == (1, 1)


def test_empty_exp_alerts_passes_when_quiet_and_fails_when_firing(tmp_path: Path) -> None:
    assert _run(tmp_path, _case("30s"), values="100x59").ok
    result = _run(tmp_path, _case("30s"), values="900x59")
    assert len(result.failures) == 1
    failure = result.failures[0]
    assert "    exp: [] (no alert)" in failure
    assert '    got: [{labels={"alertname": "Slow", "service": "a", "severity": "page"}' in failure


def test_wrong_labels_fail_with_exp_and_got(tmp_path: Path) -> None:
    result = _run(tmp_path, _case("30s", "Slow", "- exp_labels: {service: a, severity: ticket}"))
    (failure,) = result.failures
    head, exp, got = failure.splitlines()
    assert head == f"{tmp_path / 't.test.yaml'}:10:9: group 1: alertname Slow, time 30s:"
    assert exp == '    exp: [{labels={"alertname": "Slow", "service": "a", "severity": "ticket"}}]'
    assert got.startswith('    got: [{labels={"alertname": "Slow", "service": "a", "severity": "page"} annotations=')


def test_a_missing_or_an_extra_alert_fails(tmp_path: Path) -> None:
    two = [SLOW_A, "- exp_labels: {service: b, severity: page}"]
    assert not _run(tmp_path, _case("30s", "Slow", *two)).ok  # b never fires
    both = _run(tmp_path, _case("30s", "Slow", SLOW_A, SLOW_A))
    assert not both.ok  # one alert cannot satisfy two expectations


def test_annotations_are_compared_only_when_given(tmp_path: Path) -> None:
    right = SLOW_A + "\n  exp_annotations: {summary: a at 900 ms}"
    wrong = SLOW_A + "\n  exp_annotations: {summary: a at 901 ms}"
    assert _run(tmp_path, _case("30s", "Slow", SLOW_A)).ok
    assert _run(tmp_path, _case("30s", "Slow", right)).ok
    result = _run(tmp_path, _case("30s", "Slow", wrong))
    (failure,) = result.failures
    assert 'annotations={"summary": "a at 901 ms"}' in failure
    assert 'annotations={"summary": "a at 900 ms"}' in failure
    # an empty mapping is given, so it is compared: the alert has a summary
    assert not _run(tmp_path, _case("30s", "Slow", SLOW_A + "\n  exp_annotations: {}")).ok


def test_underscore_means_no_event_at_that_step(tmp_path: Path) -> None:
    # events at 0, 1 and 7 only: exactly three in the window
    assert _run(tmp_path, _case("7s", "Exactly3", "- exp_labels: {service: a}"), values="900x1 _x5 900").ok
    # the same series without gaps has eight events by then
    assert _run(tmp_path, _case("7s", "Exactly3"), values="900x1 900x5 900").ok


def test_underscore_in_any_column_drops_the_whole_event(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    path = tmp_path / "t.test.yaml"
    path.write_text(
        textwrap.dedent(
            """
            rule_files: [rules.yaml]
            tests:
              - interval: 1s
                input_events:
                  - source: inference
                    fields: {service: a, model: m, model_version: "1"}
                    values: {latency_ms: '100x4', status: 'ok _x3 ok'}
                alert_rule_test:
                  - eval_time: 10s
                    alertname: Exactly3
                    exp_alerts:
                      - exp_labels: {service: a}
            """
        )
    )
    # five latencies, but status is missing at steps 1..3: two events, not five
    assert not run_test_file(path).ok
    path.write_text(path.read_text().replace("'ok _x3 ok'", "'ok _x2 okx1'"))
    assert run_test_file(path).ok  # now steps 0, 3 and 4


def test_cases_listed_out_of_order(tmp_path: Path) -> None:
    cases = _case("30s", "Slow", SLOW_A) + _case("5s") + _case("64s") + _case("10s", "Slow", SLOW_A) + _case("63s", "Slow", SLOW_A)
    # slow until 58s; quiet from 59s; keep_firing_for 5s: firing at 63s, resolved at 64s
    result = _run(tmp_path, cases, values="900x58 100x20")
    assert result.ok, result.failures
    assert result.cases == 5


def test_failures_point_at_their_own_case(tmp_path: Path) -> None:
    cases = _case("30s") + _case("5s", "Slow", SLOW_A)
    result = _run(tmp_path, cases)
    lines = sorted(f.splitlines()[0] for f in result.failures)
    file = tmp_path / "t.test.yaml"
    assert lines == [f"{file}:10:9: group 1: alertname Slow, time 30s:", f"{file}:13:9: group 1: alertname Slow, time 5s:"]


def test_a_case_does_not_depend_on_which_other_cases_are_listed(tmp_path: Path) -> None:
    # slow events at 0..4; the 10s max window clears at 14s, keep_firing_for 10s: resolved at 24s.
    # Evaluation runs at every interval, as promtool's does, whether or not a case asks.
    alone = _run(tmp_path, _case("30s", "Spike"), values="900x4")
    assert alone.ok, alone.failures
    with_earlier = _run(tmp_path, _case("20s", "Spike", "- exp_labels: {service: a}") + _case("30s", "Spike"), values="900x4")
    assert with_earlier.ok, with_earlier.failures
    assert _run(tmp_path, _case("23s", "Spike", "- exp_labels: {service: a}"), values="900x4").ok
    assert _run(tmp_path, _case("24s", "Spike"), values="900x4").ok


def test_groups_run_independently(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    group = textwrap.dedent(
        """
          - interval: 1s
            input_events:
              - source: inference
                fields: {{service: {svc}, model: m, model_version: "1", status: ok}}
                values: {{latency_ms: '900x30'}}
            alert_rule_test:
              - eval_time: 20s
                alertname: Slow
                exp_alerts:
                  - exp_labels: {{service: {svc}, severity: page}}
        """
    )
    path = tmp_path / "t.test.yaml"
    path.write_text("rule_files: [rules.yaml]\ntests:\n" + group.format(svc="a") + group.format(svc="b"))
    result = run_test_file(path)
    assert result.ok, result.failures
    assert (result.groups, result.cases) == (2, 2)


def test_interval_spaces_the_events(tmp_path: Path) -> None:
    # every 10s: events at 0, 10, 20, ... so exactly three are in the window from 20s to 29s
    three = "- exp_labels: {service: a}"
    assert _run(tmp_path, _case("25s", "Exactly3", three), values="900x5", interval="10s").ok
    assert _run(tmp_path, _case("35s", "Exactly3"), values="900x5", interval="10s").ok
    assert _run(tmp_path, _case("25s", "Exactly3"), values="900x5", interval="1s").ok  # all six by 5s


def test_start_shifts_events_and_eval_times_together(tmp_path: Path) -> None:
    result = _run(tmp_path, _case("9s") + _case("10s", "Slow", SLOW_A), start=1_700_000_000)
    assert result.ok, result.failures


@pytest.mark.parametrize(
    ("group", "fragment"),
    [
        ("  - interval: 0s\n", "interval must be greater than 0"),
        ("  - interval: soon\n", "is not a duration"),
        ("  - intervall: 1s\n", "Extra inputs are not permitted"),
    ],
)
def test_bad_group_settings_are_errors(tmp_path: Path, group: str, fragment: str) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    path = tmp_path / "t.test.yaml"
    path.write_text("rule_files: [rules.yaml]\ntests:\n" + group)
    with pytest.raises(RuleError) as caught:
        run_test_file(path)
    assert str(caught.value).startswith(f"{path}:3:")
    assert fragment in str(caught.value)


def test_bad_notation_and_bad_events_are_errors_with_positions(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        _run(tmp_path, _case("5s"), values="900x3 fast+1")
    assert str(caught.value).startswith(f"{tmp_path / 't.test.yaml'}:8:30: ")
    assert "values.latency_ms: 'fast+1': only numbers can have a step" in str(caught.value)
    with pytest.raises(RuleError) as caught:
        _run(tmp_path, _case("5s"), values="900x3 fast")
    assert "step 4: invalid inference event: inference.latency_ms" in str(caught.value)


def test_a_bad_rule_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES.replace("kind: threshold, field: latency_ms, op", "kind: treshold, field: latency_ms, op", 1))
    path = tmp_path / "t.test.yaml"
    path.write_text("rule_files: [rules.yaml]\ntests: []\n")
    with pytest.raises(RuleError, match=r"rules\.yaml:8:26: .*unknown detector \"treshold\""):
        run_test_file(path)
