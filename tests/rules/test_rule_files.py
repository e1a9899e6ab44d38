"""Rule files in good/bad pairs, as Prometheus' ``model/rulefmt/rulefmt_test.go`` keeps them.

Every ``testdata/*.good.yaml`` must load. Every ``testdata/*.bad.yaml`` must fail with
the errors listed for it in ``BAD_FILES``: each at its ``file:LINE:``, each with a
fragment of its reason, and no others. A new validation check needs a new bad file and
a new row here; ``test_every_bad_file_has_a_row`` makes sure of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import RuleError, RuleFileErrors
from agent.rules import load_rule_file, load_rules

TESTDATA = Path(__file__).parent / "testdata"

# file -> every error it must produce: (line, fragment of the reason). line None: no line.
BAD_FILES: dict[str, list[tuple[int | None, str]]] = {
    # YAML itself
    "yaml_syntax.bad.yaml": [(5, "YAML syntax error")],
    "duplicate_key.bad.yaml": [(9, "duplicate key 'for'")],
    "non_scalar_key.bad.yaml": [(9, "mapping keys must be plain scalars")],
    "unknown_tag.bad.yaml": [(8, "could not determine a constructor for the tag '!vault'")],
    "bad_typed_scalar.bad.yaml": [(8, "cannot read 'five' as tag:yaml.org,2002:int")],
    "merge_key.bad.yaml": [(7, "YAML merge keys ('<<') are not supported")],
    "not_utf8.bad.yaml": [(None, "file is not UTF-8 text")],
    # the file
    "empty.bad.yaml": [(1, "file is empty (expected a 'groups' list)")],
    "top_level_list.bad.yaml": [(2, "top level must be a mapping with a 'groups' list")],
    "unknown_top_key.bad.yaml": [
        (2, "missing required key 'groups'"),
        (2, "unknown key 'grups' (did you mean \"groups\"?)"),
    ],
    "missing_groups.bad.yaml": [(2, "missing required key 'groups'")],
    "groups_not_list.bad.yaml": [(3, "groups: Input should be a valid list")],
    # groups
    "group_not_mapping.bad.yaml": [(3, "a group must be a mapping with 'name' and 'rules'")],
    "unknown_group_key.bad.yaml": [(4, "group \"g\": unknown key 'rule' (did you mean \"rules\"?)")],
    "group_missing_name.bad.yaml": [(3, "missing required key 'name'")],
    "group_empty_name.bad.yaml": [(3, "name: String should have at least 1 character")],
    "rules_not_list.bad.yaml": [(4, "rules: Input should be a valid list")],
    "duplicate_group.bad.yaml": [(7, 'duplicate group name "g" (first at group 1)')],
    # rules: shape
    "rule_not_mapping.bad.yaml": [(5, "group \"g\", rule 1: a rule must be a mapping")],
    "unknown_rule_key.bad.yaml": [(8, "unknown key 'annotation' (did you mean \"annotations\"?)")],
    "missing_alert.bad.yaml": [(5, "missing required key 'alert'")],
    "missing_source.bad.yaml": [(5, "missing required key 'source'")],
    "missing_detector.bad.yaml": [(5, "missing required key 'detector'")],
    "bad_source.bad.yaml": [(6, "source must be one of inference, llm, gpu, retrieval, feedback, got 'inferense'")],
    "bad_duration.bad.yaml": [(8, "for: '5 minutes' is not a duration (write e.g. 30s, 5m, 1h30m)")],
    "negative_duration.bad.yaml": [(8, "keep_firing_for: -30 must be a finite, non-negative duration")],
    "bad_alert_name.bad.yaml": [(5, "alert: String should match pattern")],
    "duplicate_alert.bad.yaml": [(8, 'rule 2 "HighLatency": duplicate alert name "HighLatency" in group (first is rule 1)')],
    "labels_not_mapping.bad.yaml": [(8, "labels: Input should be a valid dictionary")],
    "label_value_not_scalar.bad.yaml": [(9, "labels.team: Input should be a valid string")],
    "action_not_mapping.bad.yaml": [(8, "actions.0: Input should be a valid dictionary")],
    # match
    "selector_no_braces.bad.yaml": [(8, "match: selector must be wrapped in braces")],
    "selector_syntax.bad.yaml": [(8, "match: cannot parse matcher at 'service=checkout'")],
    "selector_regex.bad.yaml": [(8, "match: invalid regex 'fraud-(' for model")],
    "match_not_string.bad.yaml": [(9, "match: Input should be a valid string")],
    "match_unknown_field.bad.yaml": [(8, "unknown field 'servce' for source inference (did you mean \"service\"?)")],
    # by
    "by_unknown_field.bad.yaml": [(8, "unknown field 'modle' for source inference (did you mean \"model\"?)")],
    "by_not_string.bad.yaml": [(8, "by.1: Input should be a valid string")],
    "by_twice.bad.yaml": [(8, "by lists a field twice")],
    "map_field_wrong_source.bad.yaml": [(8, "'features' is not a map field of llm events (map fields: labels)")],
    # detector
    "detector_not_mapping.bad.yaml": [(7, "detector: Input should be a valid dictionary")],
    "unknown_detector.bad.yaml": [(7, 'unknown detector "treshold" (did you mean "threshold"?)')],
    "detector_kind_not_string.bad.yaml": [(7, "unknown detector \"['threshold']\"")],
    "detector_missing_kind.bad.yaml": [(7, "detector: missing required key 'kind'")],
    "detector_missing_field.bad.yaml": [(7, "detector: missing required key 'field'")],
    "detector_unknown_field.bad.yaml": [(7, "unknown field 'latency' for source inference (did you mean \"latency_ms\"?)")],
    "detector_field_not_string.bad.yaml": [(7, "field name must be a string, got 7")],
    "detector_equals_not_scalar.bad.yaml": [(7, "detector.equals must be a scalar")],
    "detector_unknown_param.bad.yaml": [(11, 'unknown parameter "windw_s" for detector "threshold" (did you mean "window_s"?)')],
    "detector_bad_window.bad.yaml": [(11, "window_s: '1 minute' is not a duration")],
    "detector_agg_needs_window.bad.yaml": [(10, "detector \"threshold\": agg 'p99' needs a window_s > 0")],
    "detector_bad_op.bad.yaml": [(7, "detector \"threshold\": op '=>' is not one of")],
    # every detector kind checks its parameters when the rules load, not when the first event
    # comes, and the error points at the parameter its message names (else at `detector:`)
    "detector_latency_anomaly_bad_param.bad.yaml": [(10, 'detector "latency_anomaly": latency_anomaly: threshold must be a number in (0, 1], got 5')],
    "detector_error_rate_bad_param.bad.yaml": [(11, 'detector "error_rate": slo_target must be a fraction between 0 and 1')],
    "detector_token_spend_bad_param.bad.yaml": [(8, 'detector "token_spend": nothing to detect')],
    "detector_drift_bad_param.bad.yaml": [(10, 'detector "drift": reference_size must be an integer >= 10, got 5')],
    "detector_category_drift_bad_param.bad.yaml": [(10, 'detector "category_drift": max_categories must be an integer between 2 and 256')],
    "detector_gpu_pressure_bad_param.bad.yaml": [(10, "detector \"gpu_pressure\": signal 'power' needs power_cap_w")],
    # drift references: files relative to the rules file, read once at load; named windows
    "drift_reference_missing.bad.yaml": [(10, "reference_file: cannot read reference file")],
    "drift_reference_bad_value.bad.yaml": [(10, 'reference/bad_value.csv:4: expected a finite number, got "abc"')],
    "drift_reference_no_column.bad.yaml": [(10, "reference/amount.csv:1: no column 'price' in the header (amount, country)")],
    "detector_reference_not_applicable.bad.yaml": [(11, "reference_file applies only to detectors with a reference (drift, category_drift)")],
    "drift_reference_and_file.bad.yaml": [(11, "give reference or reference_file, not both")],
    "drift_reference_window_backwards.bad.yaml": [(10, "reference_window must start before it ends")],
    # labels, annotations, actions
    "invalid_label_name.bad.yaml": [(10, "invalid label name 'team-name'")],
    "label_alertname.bad.yaml": [(9, "invalid label name 'alertname'")],
    "annotation_unknown_variable.bad.yaml": [(9, "annotation 'summary': unknown template variable {{ $lables.service }}")],
    "annotation_unknown_function.bad.yaml": [(9, "annotation 'summary': unknown template function 'humanise'")],
    "annotation_label_not_carried.bad.yaml": [
        (9, "annotation 'summary': $labels.region is not a label of this rule's alerts (they carry: alertname, model, service)")
    ],
    "annotation_unbalanced.bad.yaml": [(9, "annotation 'summary': unbalanced braces")],
    "unknown_action.bad.yaml": [(9, 'unknown action type "reboot_datacenter"')],
    "action_unknown_param.bad.yaml": [(11, 'action 1 "notify": unknown key \'cooldwn\' (did you mean "cooldown"?)')],
    "action_bad_mode.bad.yaml": [(11, "action 1 \"notify\": mode: Input should be 'dry-run', 'enforce' or 'approve'")],
    "action_bad_duration.bad.yaml": [
        (11, "action 1 \"notify\": cooldown: '10 minutes' is not a duration"),
        (12, 'action 1 "notify": max_per_hour: Input should be greater than or equal to 0'),
    ],
    "action_notify_no_url.bad.yaml": [(9, 'action 1 "notify": notify needs exactly one of url_env (recommended) or url')],
    # several problems at once: every one of them, in one pass
    "many_problems.bad.yaml": [
        (4, "group \"serving\": unknown key 'interval'"),
        (10, "rule 1 \"HighLatency\": unknown key 'annotation' (did you mean \"annotations\"?)"),
        (8, "rule 1 \"HighLatency\": unknown field 'servce'"),
        (12, 'rule 2 "HighLatency": duplicate alert name "HighLatency" in group (first is rule 1)'),
        (14, 'rule 2 "HighLatency": unknown detector "treshold"'),
        (15, "rule 2 \"HighLatency\": invalid label name 'team-name'"),
        (16, 'duplicate group name "serving" (first at group 1)'),
        (21, "rule 1 \"GpuHot\": for: 'soon' is not a duration"),
    ],
}

GOOD_FILES = sorted(p.name for p in TESTDATA.glob("*.good.yaml"))


def _prefix(path: Path, line: int | None) -> str:
    return f"{path}:{line}:" if line is not None else f"{path}: "


@pytest.mark.parametrize("name", GOOD_FILES)
def test_good_file_loads(name: str) -> None:
    rules = load_rules([TESTDATA / name])
    assert len(rules) >= 1


def test_good_files_load_together() -> None:
    # group names are unique across the good files, so they load as one rule set
    rules = load_rules(sorted(TESTDATA.glob("*.good.yaml")))
    assert len(rules.files) == len(GOOD_FILES) >= 4
    assert {r.source for r in rules.rules} == {"inference", "llm", "gpu"}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_reports_every_error_at_its_line(name: str) -> None:
    path = TESTDATA / name
    with pytest.raises(RuleFileErrors) as caught:
        load_rules([path])
    text = str(caught.value)
    lines = text.splitlines()
    expected = BAD_FILES[name]
    assert len(caught.value.errors) == len(expected), text
    assert len(lines) == len(expected), text  # one line per problem
    for line, fragment in expected:
        prefix = _prefix(path, line)
        assert any(ln.startswith(prefix) and fragment in ln for ln in lines), (
            f"expected {prefix} ... {fragment!r} in:\n{text}"
        )


def test_every_bad_file_has_a_row() -> None:
    on_disk = {p.name for p in TESTDATA.glob("*.bad.yaml")}
    assert on_disk == set(BAD_FILES), "a bad file without a row, or a row without its file"
    assert len(on_disk) >= 50


def test_positions_carry_columns() -> None:
    path = TESTDATA / "unknown_detector.bad.yaml"
    with pytest.raises(RuleFileErrors) as caught:
        load_rules([path])
    (error,) = caught.value.errors
    assert (error.location.line, error.location.column) == (7, 26)  # the value of `kind:`
    assert error.context == 'group "g", rule 1 "HighLatency"'
    assert str(error) == (
        f'{path}:7:26: group "g", rule 1 "HighLatency": unknown detector "treshold" (did you mean "threshold"?)'
    )


def test_errors_of_several_files_are_reported_together() -> None:
    with pytest.raises(RuleFileErrors) as caught:
        load_rules([TESTDATA / "by_twice.bad.yaml", TESTDATA / "inference.good.yaml", TESTDATA / "bad_source.bad.yaml"])
    files = [e.location.file for e in caught.value.errors]
    assert files == [str(TESTDATA / "by_twice.bad.yaml"), str(TESTDATA / "bad_source.bad.yaml")]


def test_a_group_defined_in_two_files_is_an_error(tmp_path: Path) -> None:
    text = (TESTDATA / "equals.good.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    with pytest.raises(RuleFileErrors) as caught:
        load_rules([tmp_path])
    (error,) = caught.value.errors
    assert error.location.file == str(tmp_path / "b.yaml")
    assert f'group "equals-good" is also defined in {tmp_path / "a.yaml"}' in str(error)


def test_a_file_named_twice_loads_once(tmp_path: Path) -> None:
    # `rules check rules/ rules/r.yaml` must not load (and so run) every rule twice
    (tmp_path / "r.yaml").write_text((TESTDATA / "equals.good.yaml").read_text())
    rules = load_rules([tmp_path, tmp_path / "r.yaml", tmp_path / "." / "r.yaml"])
    assert [r.id for r in rules.rules] == ["equals-good/ErrorRatio"]
    assert rules.files == (str(tmp_path / "r.yaml"),)


def test_a_directory_skips_rule_test_files(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text((TESTDATA / "equals.good.yaml").read_text())
    (tmp_path / "r.test.yaml").write_text("rule_files: [r.yaml]\ntests: []\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    rules = load_rules([tmp_path])
    assert rules.files == (str(tmp_path / "r.yaml"),)


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"nope\.yaml: cannot read file"):
        load_rules([tmp_path / "nope.yaml"])


def test_good_file_compiles_to_what_it_says() -> None:
    rules = {r.name: r for r in load_rules([TESTDATA / "inference.good.yaml"]).rules}
    rule = rules["FraudP99Latency"]
    assert rule.id == "inference-good/FraudP99Latency"
    assert rule.for_s == 5400.0  # 1h30m
    assert rule.keep_firing_for_s == 150.0  # 2m30s
    assert rule.by == ("service", "model", "labels.region", "features.segment")
    assert rule.detector_params == {"agg": "p99", "window_s": 60.0, "op": ">", "threshold": 500, "min_count": 20}
    assert rule.series_labels(("checkout", "fraud-3", "eu", "retail")) == {
        "service": "checkout",
        "model": "fraud-3",
        "region": "eu",
        "segment": "retail",
    }
    assert rule.alert_labels(("checkout", "fraud-3", "eu", "retail"))["alertname"] == "FraudP99Latency"
    labels = {"service": "checkout", "model": "fraud-3", "region": "eu", "alertname": "FraudP99Latency"}
    summary = rule.annotations["summary"].render(labels, 912.4, {})
    assert summary == "p99 of checkout/fraud-3 in eu is 912 ms"
    description = rule.annotations["description"].render(
        labels, 1234.0, {"window_s": 60.0, "n": 40, "threshold": 500.0}
    )
    assert description == "1.234k ms over 1m 0s (40 requests, limit 500) for FraudP99Latency."


def test_label_values_that_are_yaml_scalars_become_strings() -> None:
    (rule,) = load_rule_file(TESTDATA / "equals.good.yaml")
    assert dict(rule.labels) == {"severity": "page", "priority": "1", "paging": "true"}
    assert rule.equals == "error"
    assert rule.by == ("service", "model")  # the source's default series key


def test_the_shipped_rules_load() -> None:
    rules = load_rules([Path(__file__).parents[2] / "rules"])
    assert {r.name for r in rules.rules} >= {"InferenceHighP99Latency", "InferenceHighErrorRatio"}
