"""Rule files and producer values written to hurt: each is refused fast or handled, never a hang.

The regex, YAML and template bounds of ``docs/security-rules.md``: a nested-quantifier
regex against a producer's name, alias bombs and recursive aliases in a rule file, and
templates or label values meant to render megabytes. The bad files themselves are rows
of ``test_rule_files.BAD_FILES``; here are the timings, the CLI and the properties.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.cli import app
from agent.errors import RuleError
from agent.model import InferenceEvent
from agent.rules import load_rule_file, load_rules
from agent.rules.bounds import ELLIPSIS, MAX_VALUE_LENGTH
from agent.rules.selector import compile_regex
from agent.rules.template import compile_template
from agent.rules.yamlfile import MAX_FILE_BYTES

TESTDATA = Path(__file__).parent / "testdata"
HOSTILE_YAML = ["yaml_alias_bomb.bad.yaml", "yaml_recursive_alias.bad.yaml", "yaml_recursive_mapping.bad.yaml", "yaml_too_deep.bad.yaml"]
_POSITION = re.compile(r"^FAILED:\n(?P<file>\S+\.yaml):(?P<line>\d+):(?P<col>\d+): ")

RULE = """\
groups:
  - name: g
    rules:
      - alert: Slow
        source: inference
        match: '{match}'
        by: [service]
        detector: {{kind: threshold, field: latency_ms, op: ">", threshold: 500}}
        annotations:
          summary: '{summary}'
"""


def _rule(tmp_path: Path, match: str = "{}", summary: str = "x"):
    path = tmp_path / "r.yaml"
    path.write_text(RULE.format(match=match, summary=summary))
    (rule,) = load_rule_file(path)
    return rule


def _event(**fields: Any) -> InferenceEvent:
    # model_construct: the rule engine must cope even with values the wire contract would refuse
    base = dict(type="inference", ts=0.0, labels={}, service="svc", model="m", model_version="1", latency_ms=1.0,
                status="ok", features={}, prediction=None)
    return InferenceEvent.model_construct(**(base | fields))


# --- YAML ------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", HOSTILE_YAML)
def test_hostile_yaml_is_refused_within_a_second(name: str) -> None:
    path = TESTDATA / name
    started = time.perf_counter()
    with pytest.raises(RuleError) as caught:
        load_rules([path])
    assert time.perf_counter() - started < 1.0
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", str(caught.value)), str(caught.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", HOSTILE_YAML)
def test_rules_check_exits_1_with_the_position(name: str) -> None:
    result = CliRunner().invoke(app, ["rules", "check", str(TESTDATA / name)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    found = _POSITION.match(result.stderr)
    assert found and found["file"] == str(TESTDATA / name), result.stderr


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(RuleError, match=rf"huge\.yaml: file is larger than {MAX_FILE_BYTES} bytes"):
        load_rules([path])


def test_aliases_within_the_bounds_still_load(tmp_path: Path) -> None:
    # anchors and aliases are ordinary YAML: a shared detector block is fine
    path = tmp_path / "r.yaml"
    path.write_text(
        "groups:\n  - name: g\n    rules:\n"
        "      - {alert: A, source: inference, detector: &det {kind: threshold, field: latency_ms, op: '>', threshold: 5}}\n"
        "      - {alert: B, source: inference, detector: *det}\n"
    )
    assert [r.name for r in load_rules([path]).rules] == ["A", "B"]


# --- regexes -----------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_nested_quantifier_matches_in_linear_time(tmp_path: Path) -> None:
    rule = _rule(tmp_path, match='{service=~"(a+)+$"}')
    hostile = _event(service="a" * 40 + "!")  # backtracking re: about 0.3 s * 4**8.5
    started = time.perf_counter()
    assert not rule.matches(hostile)
    assert time.perf_counter() - started < 0.05
    long_value = _event(service="a" * 100_000 + "!")
    started = time.perf_counter()
    assert not rule.matches(long_value)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("match", "service", "expected"),
    [
        ('{service=~"fraud-.*"}', "fraud-3", True),
        ('{service=~"fraud-.*"}', "xfraud-3", False),  # anchored at the start, as in PromQL
        ('{service=~"fraud"}', "fraud-3", False),  # and at the end
        ('{service=~"checkout|search"}', "search", True),
        ('{service=~"checkout|search"}', "checkout-2", False),
        ('{service!~"canary-.*"}', "canary-1", False),
        ('{service!~"canary-.*"}', "ranker", True),
        ('{service=~"(?i)RANKER"}', "ranker", True),
        ('{service=~".*"}', "", True),
        ('{service=~".+"}', "", False),
        ('{service=~"a.b"}', "a\ud800b", True),  # a lone surrogate is one character, and no crash
        ('{service=~"svc-0[0-9]"}', "svc-07", True),
    ],
)
def test_regex_semantics_are_promql_full_match(tmp_path: Path, match: str, service: str, expected: bool) -> None:
    rule = _rule(tmp_path, match=match)
    assert rule.matches(_event(service=service)) is expected
    assert rule.matches(_event(service=service)) is expected  # the memoised answer too


_PORTABLE = ["fraud-.*", "checkout|search", "svc-0[0-9]", "(a+)+b?", "[a-c]*x", "(?i)ab.", "a{2,4}", "[^/]+/v[12]"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=st.sampled_from(_PORTABLE), value=st.text(alphabet="abcxAB/-v0129fraud\n", max_size=12))
def test_re2_agrees_with_python_re_on_portable_patterns(pattern: str, value: str) -> None:
    assert (compile_regex(pattern).fullmatch(value) is not None) == (re.fullmatch(pattern, value) is not None)


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)", "(?<=a)b", "(?P<n>a)(?P=n)", "a" * 1025])
def test_patterns_re2_cannot_run_are_value_errors(pattern: str) -> None:
    with pytest.raises(ValueError, match="RE2 cannot compile it|the limit is 1024"):
        compile_regex(pattern)


# --- templates and label values ------------------------------------------------------------

HOSTILE_TEMPLATES = [
    '{{ $value | printf "%64d" }}',
    '{{ $value | printf "%.32f" }}',
    '{{ $evidence.n | printf "%d" }}',
    '{{ $evidence.n | humanize }}',
    '{{ $evidence.n | humanizePercentage }}',
    '{{ $evidence.n | humanizeDuration }}',
    '{{ $evidence.n | printf "%x" | printf "%64s" }}',
    "{{ $evidence.n }}",
    "{{ $labels.service }}" * 50,
    "x" * 5000 + "{{ $value }}",
]
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**6000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=st.sampled_from(HOSTILE_TEMPLATES),
    service=st.one_of(st.text(max_size=20), st.just("s" * 100_000)),
    value=st.floats(allow_nan=True, allow_infinity=True),
    n=_values,
)
def test_rendering_is_bounded_and_never_raises(template: str, service: str, value: float, n: Any) -> None:
    compiled = compile_template(template, {"service"})
    text = compiled.render({"service": service}, value, {"n": n})
    assert isinstance(text, str)
    assert len(text) <= MAX_VALUE_LENGTH


def test_a_cut_rendering_ends_with_the_marker() -> None:
    text = compile_template("{{ $labels.service }}", {"service"}).render({"service": "s" * 10_000}, 0.0, {})
    assert len(text) == MAX_VALUE_LENGTH and text.endswith(ELLIPSIS) and text.startswith("s" * 4000)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ('{{ $value | printf "%999999999d" }}', "printf width 999999999"),
        ('{{ $value | printf "%065d" }}', "printf width 65"),
        ('{{ $value | printf "%.33f" }}', "printf precision 33"),
        ('{{ $value | printf "%' + "9" * 5000 + 'd" }}', "over the limit of 64"),
    ],
)
def test_printf_bounds_are_checked_at_load(template: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        compile_template(template)


def test_long_label_values_are_cut_and_kept_apart(tmp_path: Path) -> None:
    rule = _rule(tmp_path)
    one, two = ("s" * 9000 + "1",), ("s" * 9000 + "2",)
    labels_one, labels_two = rule.alert_labels(one), rule.alert_labels(two)
    assert len(labels_one["service"]) == len(labels_two["service"]) == MAX_VALUE_LENGTH
    assert labels_one["service"] != labels_two["service"]
    assert ELLIPSIS in labels_one["service"]
    assert rule.alert_labels(("ranker",))["service"] == "ranker"


def test_an_action_parameter_too_long_is_refused_not_cut() -> None:
    from actions.base import ActionFailed
    from actions.label_template import MAX_RENDERED_LENGTH, render_label_template

    with pytest.raises(ActionFailed, match=f"the limit is {MAX_RENDERED_LENGTH}"):
        render_label_template("{{ $labels.service }}", {"service": "s" * (MAX_RENDERED_LENGTH + 1)}, "deployment")
    assert render_label_template("{{ $labels.service }}", {"service": "ranker"}, "deployment") == "ranker"


_YAML_TOKENS = st.sampled_from(
    ["[", "]", "{", "}", ",", ": ", "- ", "\n", "  ", "&a ", "&b ", "*a", "*b", "x", "groups", "!!int ", "!!str ", "<<: ", "'", '"', "#", "1e9999", "~", "? "]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(_YAML_TOKENS, max_size=60))
def test_any_yaml_is_read_or_refused_as_a_rule_error(tokens: list[str]) -> None:
    from agent.rules.yamlfile import load_yaml

    try:
        load_yaml("fuzz.yaml", "".join(tokens))
    except RuleError as exc:
        assert str(exc).startswith("fuzz.yaml")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ["{{" * 200_000, "{{ $value }}" + "{{ x" * 100_000, "{" * 400_000])
def test_template_scanning_is_linear(text: str) -> None:
    # the lazy `\{\{(.*?)\}\}` rescanned the rest from every unclosed `{{`: a minute at 20 000
    from actions.label_template import check_label_template

    started = time.perf_counter()
    with pytest.raises(ValueError):
        compile_template(text)
    assert time.perf_counter() - started < 1.0
    started = time.perf_counter()
    check_label_template(text.replace("$value", "$labels.service"))
    assert time.perf_counter() - started < 1.0
