"""``humanizeDuration`` renders as Prometheus' does (template.go), so a page reads the same
whichever system sent it: ``1m 30s``, ``1h 0m 0s``, ``1.5s``, ``500ms``."""

from __future__ import annotations

import math

import pytest

from agent.rules.template import compile_template

# Prometheus' template_test.go cases, and the values Watchkeeper's evidence carries
CASES = [
    (0, "0s"),
    (1, "1s"),
    (60, "1m 0s"),
    (90, "1m 30s"),
    (3600, "1h 0m 0s"),
    (86400, "1d 0h 0m 0s"),
    (86400 + 3600, "1d 1h 0m 0s"),
    (-(86400 * 2 + 3600 * 3 + 60 * 4 + 5), "-2d 3h 4m 5s"),
    (899.99, "14m 59s"),  # whole seconds from a minute up, cut off rather than rounded
    (60.5, "1m 0s"),
    (59.99, "59.99s"),
    (12.345, "12.35s"),
    (1.5, "1.5s"),
    (0.5, "500ms"),
    (0.1, "100ms"),
    (0.0001, "100us"),
    (2.5e-9, "2.5ns"),
    (30 * 86400.0, "30d 0h 0m 0s"),
    (math.inf, "+Inf"),
    (-math.inf, "-Inf"),
    (math.nan, "NaN"),
]


@pytest.mark.parametrize(("seconds", "text"), CASES)
def test_humanize_duration_matches_prometheus(seconds: float, text: str) -> None:
    template = compile_template("{{ $evidence.d | humanizeDuration }}")
    assert template.render({}, 0.0, {"d": seconds}) == text


def test_humanize_duration_of_a_value_that_is_not_a_number_renders_it_as_is() -> None:
    template = compile_template("{{ $evidence.d | humanizeDuration }}|{{ $labels.x | humanizeDuration }}")
    assert template.render({"x": "soon"}, 0.0, {"d": True}) == "True|soon"
