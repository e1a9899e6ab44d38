"""The small languages inside rule files: notation, durations, selectors, templates."""

from __future__ import annotations

import math

import pytest

from agent.duration import format_duration, parse_duration
from agent.model import EVENT_ADAPTER
from agent.rules.notation import MISSING, expand
from agent.rules.selector import Matcher, parse_selector
from agent.rules.template import compile_template

# --- promtool's expanding notation ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1+2x3", [1, 3, 5, 7]),  # promtool: 'a+bxn' is a, a+b, ..., a+n*b
        ("1-1x3", [1, 0, -1, -2]),
        ("-2+0.5x2", [-2, -1.5, -1]),
        ("5x2", [5, 5, 5]),
        ("5x0", [5]),
        ("7", [7]),
        ("1e3 .5 -3", [1000, 0.5, -3]),
        ("1 2 3 _ 5", [1, 2, 3, MISSING, 5]),
        ("_x3", [MISSING, MISSING, MISSING]),  # promtool: '_x3' is three missing samples
        ("1x2 _x2 4", [1, 1, 1, MISSING, MISSING, 4]),
        ("", []),
    ],
)
def test_notation_numbers(text: str, values: list) -> None:
    assert expand(text) == values


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("ok", ["ok"]),
        ("okx2 error", ["ok", "ok", "ok", "error"]),
        ("xx2", ["x", "x", "x"]),
        ("gpt-4o-mini us.east-1", ["gpt-4o-mini", "us.east-1"]),
        # '-' belongs to words: a model name is not a number with a step
        ("gpt-4", ["gpt-4"]),
        ("gpt-4x2 claude-3.5", ["gpt-4", "gpt-4", "gpt-4", "claude-3.5"]),
    ],
)
def test_notation_words(text: str, values: list) -> None:
    assert expand(text) == values


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1x", "cannot read '1x'"),
        ("1+x2", "cannot read '1+x2'"),
        ("1..2", "cannot read '1..2'"),
        ("error+1x3", "only numbers can have a step"),
        ("_+1x2", "a missing sample cannot have a step"),
        ("ok 5y", "cannot read '5y'"),
        ("{}", "cannot read '{}'"),
    ],
)
def test_notation_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        expand(text)
    assert fragment in str(caught.value)


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1h30m15s", 5415),
        ("250ms", 0.25),
        ("1m500ms", 60.5),
        ("1.5h", 5400),
        ("1d", 86400),
        ("2w", 1209600),
        ("1y", 31536000),
        ("0s", 0),
        (" 5m ", 300),
        (90, 90),
        (2.5, 2.5),
        (0, 0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m", "5 m", "1h 30m", "1m30", "5M", "-5s", "5 minutes", "soon", True, None, [1], -1, math.inf, math.nan])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (45, "45s"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86461, "1d1m1s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds  # round trip


@pytest.mark.parametrize("text", ["1h30m", "2m30s", "1d2h3m4s", "500ms", "45s", "10m"])
def test_duration_round_trip(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


# --- selectors -----------------------------------------------------------------------


def _event(**over: object):
    payload = {
        "type": "inference",
        "ts": 0,
        "service": "checkout",
        "model": "fraud-2",
        "model_version": "3",
        "latency_ms": 12.5,
        "status": "ok",
        "labels": {"region": "eu"},
        "features": {"segment": "retail", "age": 42},
    }
    payload.update(over)
    return EVENT_ADAPTER.validate_python(payload)


def _matches(selector: str, event=None) -> bool:
    event = event if event is not None else _event()
    return all(m.compile()(event) for m in parse_selector(selector))


def test_selector_parses_all_four_operators() -> None:
    assert parse_selector('{a="x", b!="y", c=~"z.*", labels.d!~"w|v"}') == [
        Matcher("a", "=", "x"),
        Matcher("b", "!=", "y"),
        Matcher("c", "=~", "z.*"),
        Matcher("labels.d", "!~", "w|v"),
    ]


@pytest.mark.parametrize("text", ["{}", "{ }", "  {}  "])
def test_empty_selector_matches_everything(text: str) -> None:
    assert parse_selector(text) == []
    assert _matches(text)


def test_selector_quotes_and_escapes() -> None:
    assert parse_selector(r'{a="say \"hi\"", b="back\\slash"}') == [
        Matcher("a", "=", 'say "hi"'),
        Matcher("b", "=", "back\\slash"),
    ]
    assert parse_selector(r"{a='it\'s'}") == [Matcher("a", "=", "it's")]
    assert parse_selector('{a="x",}') == [Matcher("a", "=", "x")]  # trailing comma, as PromQL allows
    assert parse_selector('{ a = "x" , b =~ "y" }') == [Matcher("a", "=", "x"), Matcher("b", "=~", "y")]
    assert parse_selector('{a="}{,"}') == [Matcher("a", "=", "}{,")]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('service="x"', "must be wrapped in braces"),
        ('{service="x"', "must be wrapped in braces"),
        ("{service}", "cannot parse matcher at 'service'"),
        ("{service=x}", "cannot parse matcher at 'service=x'"),
        ('{a="x" b="y"}', "cannot parse matcher at"),
        ('{a=="x"}', "cannot parse matcher at"),
        ('{="x"}', "cannot parse matcher at"),
        ('{1a="x"}', "cannot parse matcher at"),
        ('{a=~"("}', "invalid regex '(' for a"),
        ('{a!~"[z-a]"}', "invalid regex"),
    ],
)
def test_selector_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_selector(text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ('{service="checkout"}', True),
        ('{service="check"}', False),
        ('{service!="checkout"}', False),
        ('{service!="search"}', True),
        # regexes are fully anchored, as in PromQL
        ('{model=~"fraud"}', False),
        ('{model=~"fraud-.*"}', True),
        ('{model=~"fraud|x"}', False),
        ('{model=~"x|fraud-2"}', True),
        ('{model!~"fraud"}', True),
        ('{model!~"fraud-[0-9]"}', False),
        # map fields and a missing field, which reads as ""
        ('{labels.region="eu"}', True),
        ('{labels.region=~"eu|us"}', True),
        ('{labels.zone=""}', True),
        ('{labels.zone!=""}', False),
        ('{labels.zone=~".*"}', True),
        ('{labels.zone=~".+"}', False),
        ('{features.segment!~"test|canary"}', True),
        ('{features.segment="retail"}', True),
        ('{prediction=""}', True),
        # every matcher must hold
        ('{service="checkout", model=~"fraud-.*", labels.region!="us"}', True),
        ('{service="checkout", model=~"ranker"}', False),
    ],
)
def test_selector_matching(selector: str, expected: bool) -> None:
    assert _matches(selector) is expected


# --- templates -----------------------------------------------------------------------


def _render(text: str, value: float = 0.0, labels: dict | None = None, evidence: dict | None = None, known=None) -> str:
    return compile_template(text, known).render(labels or {}, value, evidence or {})


def test_template_variables() -> None:
    text = "{{ $labels.service }} {{$value}} {{ $evidence.threshold }} done"
    assert _render(text, 0.5, {"service": "checkout"}, {"threshold": 500.0}) == "checkout 0.5 500 done"
    assert _render("no actions at all") == "no actions at all"
    assert _render("{{ $value }}", 1 / 3) == "0.333333"


@pytest.mark.parametrize(
    ("pipe", "value", "text"),
    [
        ("humanize", 12, "12"),
        ("humanize", 1234.5, "1.234k"),
        ("humanize", 2_500_000, "2.5M"),
        ("humanize", 3e9, "3G"),
        ("humanize", 4e12, "4T"),
        ("humanize", 0.125, "0.125"),
        ("humanizePercentage", 0.05, "5%"),
        ("humanizePercentage", 0.1234, "12.34%"),
        ("humanizePercentage", 1, "100%"),
        ("humanizeDuration", 90, "1m 30s"),
        ("humanizeDuration", 5400, "1h 30m 0s"),
        ("humanizeDuration", 0.25, "250ms"),
        ('printf "%.2f"', 3.14159, "3.14"),
        ('printf "%.0f"', 899.6, "900"),
        ('printf "%d"', 42.9, "42"),
        ('printf "%5.1f"', 2.25, "  2.2"),
        ('printf "%s"', 7.0, "7.0"),
    ],
)
def test_template_pipes(pipe: str, value: float, text: str) -> None:
    assert _render("{{ $value | " + pipe + " }}", value) == text


def test_template_pipes_chain_and_apply_to_evidence() -> None:
    assert _render('{{ $value | printf "%.0f" | humanize }}', 1234.0) == "1234"  # humanize of a string is the string
    assert _render("{{ $evidence.window_s | humanizeDuration }}", evidence={"window_s": 3600.0}) == "1h 0m 0s"


@pytest.mark.parametrize(
    "text",
    [
        "{{ $labels.missing }}",
        "{{ $evidence.missing }}",
        "{{ $evidence.missing | humanize }}",
        "{{ $evidence.missing | humanizePercentage }}",
        "{{ $evidence.missing | humanizeDuration }}",
        '{{ $evidence.missing | printf "%.2f" }}',
    ],
)
def test_template_missing_values_render_empty(text: str) -> None:
    assert _render("[" + text + "]", 1.0) == "[]"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{{ $lables.service }}", "unknown template variable {{ $lables.service }}"),
        ("{{ .Labels.service }}", "unknown template variable"),
        ("{{ $value.x }}", "unknown template variable"),
        ("{{ }}", "unknown template variable"),
        ("{{ $value | humanise }}", "unknown template function 'humanise'"),
        ("{{ $value | printf }}", "unknown template function 'printf'"),
        ('{{ $value | printf "%q" }}', "unknown template function"),
        ("{{ $value | toUpper }}", "unknown template function 'toUpper'"),
        ("{{ $value", "unbalanced braces"),
        ("{{ $value }} and }}", "unbalanced braces"),
    ],
)
def test_template_errors_at_compile_time(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        compile_template(text)
    assert fragment in str(caught.value)


def test_template_labels_must_be_carried() -> None:
    carried = {"service", "model", "alertname"}
    assert _render("{{ $labels.service }}", labels={"service": "a"}, known=carried) == "a"
    with pytest.raises(ValueError, match=r"\$labels.region is not a label of this rule's alerts \(they carry: alertname, model, service\)"):
        compile_template("{{ $labels.region }}", carried)
    # without a list of labels (known=None), any label name compiles
    assert _render("{{ $labels.region }}") == ""
