"""``watchkeeper rules test``: unit tests for rules, shaped like ``promtool test rules``.

A test file names the rule files under test, then test groups. Each group lists input
events as series over time (promtool's expanding notation per field) and the alerts
expected to be firing at given evaluation times. Events run through the same
``Pipeline`` the agent uses, in event time, so a test's result is exact and fast.

    rule_files: [../inference.yaml]
    tests:
      - interval: 1s
        input_events:
          - source: inference
            fields: {service: checkout, model: fraud, model_version: "3", status: ok}
            values: {latency_ms: '100x59 900x120'}
        alert_rule_test:
          - eval_time: 2m
            alertname: InferenceHighP99Latency
            exp_alerts:
              - exp_labels: {service: checkout, model: fraud, severity: page, team: ml-platform}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.duration import format_duration, parse_duration
from agent.errors import RuleError, RuleFileErrors
from agent.model import EVENT_ADAPTER, Alert
from agent.rules import load_rules
from agent.rules.notation import expand
from agent.rules.yamlfile import load_yaml
from agent.runtime.pipeline import Pipeline

__all__ = ["TestFileResult", "run_test_file"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ExpAlert(_Strict):
    exp_labels: dict[str, str] = Field(default_factory=dict)
    exp_annotations: dict[str, str] | None = None


class _AlertTest(_Strict):
    eval_time: float
    alertname: str
    exp_alerts: list[_ExpAlert] = Field(default_factory=list)

    _t = field_validator("eval_time", mode="before")(parse_duration)


class _InputEvents(_Strict):
    source: str
    fields: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, str]


class _TestGroup(_Strict):
    name: str = ""
    interval: float = 1.0
    start: float = 0.0
    input_events: list[_InputEvents] = Field(default_factory=list)
    alert_rule_test: list[_AlertTest] = Field(default_factory=list)

    _i = field_validator("interval", mode="before")(parse_duration)

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("interval must be greater than 0 (e.g. 1s)")
        return value


class _TestFile(_Strict):
    rule_files: list[str]
    tests: list[_TestGroup]


@dataclass
class TestFileResult:
    """What one test file did: the failures (empty when it passed) and how much ran."""

    file: str
    groups: int = 0
    cases: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def run_test_file(path: str | Path) -> TestFileResult:
    """Run every test group of one file; user mistakes raise ``RuleError``."""
    doc = load_yaml(path)
    try:
        spec = _TestFile.model_validate(doc.data)
    except ValidationError as exc:
        raise RuleFileErrors(
            [RuleError(f"{'.'.join(map(str, e['loc']))}: {e['msg']}", doc.where(e["loc"])) for e in exc.errors()]
        ) from None
    base = Path(path).parent
    rules = load_rules([base / f for f in spec.rule_files])
    result = TestFileResult(file=str(path))
    for gi, group in enumerate(spec.tests):
        events = _events(group, gi, doc)
        result.groups += 1
        pipeline = Pipeline(rules)
        cases = sorted(enumerate(group.alert_rule_test), key=lambda c: c[1].eval_time)
        pos = step = 0
        for ci, case in cases:
            t = group.start + case.eval_time
            # evaluate at every interval up to t, as promtool does, so that a case's result
            # never depends on which other cases the group happens to list
            while (at := group.start + step * group.interval) <= t:
                pos = _feed(pipeline, events, pos, at)
                pipeline.tick(at)
                step += 1
            pos = _feed(pipeline, events, pos, t)
            pipeline.tick(t)
            result.cases += 1
            got = [a for a in pipeline.firing() if a.name == case.alertname]
            problem = _compare(case, got)
            if problem:
                where = doc.where(("tests", gi, "alert_rule_test", ci))
                label = f' "{group.name}"' if group.name else ""
                result.failures.append(
                    f"{where}: group {gi + 1}{label}: alertname {case.alertname}, "
                    f"time {format_duration(case.eval_time)}:\n{problem}"
                )
    return result


def _feed(pipeline: Pipeline, events: list[Any], pos: int, until: float) -> int:
    while pos < len(events) and events[pos].ts <= until:
        pipeline.process(events[pos])
        pos += 1
    return pos


def _events(group: _TestGroup, gi: int, doc: Any) -> list[Any]:
    events: list[tuple[float, int, Any]] = []
    errors: list[RuleError] = []
    for si, series in enumerate(group.input_events):
        where = ("tests", gi, "input_events", si)
        columns: dict[str, list[Any]] = {}
        for name, text in series.values.items():
            try:
                columns[name] = expand(text)
            except ValueError as exc:
                errors.append(RuleError(f"values.{name}: {exc}", doc.where(where + ("values", name))))
        if not columns:
            continue
        length = max(len(c) for c in columns.values())
        for i in range(length):
            row = {k: c[i] for k, c in columns.items() if i < len(c) and c[i] is not None}
            if len(row) < len(columns):
                continue  # a '_' in any column means no event at this step
            ts = group.start + i * group.interval
            payload = {**series.fields, **row, "type": series.source, "ts": ts}
            try:
                events.append((ts, len(events), EVENT_ADAPTER.validate_python(payload)))
            except ValidationError as exc:
                first = exc.errors()[0]
                errors.append(
                    RuleError(
                        f"step {i}: invalid {series.source} event: {'.'.join(map(str, first['loc']))}: {first['msg']}",
                        doc.where(where),
                    )
                )
                break
    if errors:
        raise RuleFileErrors(errors)
    events.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in events]


def _compare(case: _AlertTest, got: list[Alert]) -> str | None:
    expected = []
    for exp in case.exp_alerts:
        labels = dict(exp.exp_labels)
        labels["alertname"] = case.alertname
        expected.append((labels, exp.exp_annotations))
    unmatched = list(got)
    missing = []
    for labels, want in expected:
        hit = next(
            (a for a in unmatched if dict(a.labels) == labels and (want is None or dict(a.annotations) == want)),
            None,
        )
        if hit is None:
            missing.append((labels, want))
        else:
            unmatched.remove(hit)
    if not missing and not unmatched:
        return None
    exp_text = _render((lab, ann) for lab, ann in expected)
    got_text = _render((dict(a.labels), dict(a.annotations)) for a in got)
    return f"    exp: {exp_text}\n    got: {got_text}"


def _render(items: Iterable[tuple[dict[str, str], dict[str, str] | None]]) -> str:
    parts = []
    for labels, shown in items:
        text = "labels=" + json.dumps(labels, sort_keys=True)
        if shown is not None:
            text += " annotations=" + json.dumps(shown, sort_keys=True)
        parts.append("{" + text + "}")
    return "[" + ", ".join(parts) + "]" if parts else "[] (no alert)"
