"""Load rule files strictly, report every problem in one pass, each with file:line:col.

The shape is a Prometheus rule file (``groups[].rules[]`` with ``alert``, ``for``,
``keep_firing_for``, ``labels``, ``annotations``) plus Watchkeeper's ``source``,
``match``, ``by``, ``detector`` and ``actions``. Unknown keys are errors (with a
did-you-mean), as are duplicate names and unknown detector kinds, fields or actions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from actions.registry import ACTIONS
from agent.duration import parse_duration
from agent.errors import DetectorError, Location, RuleError, RuleFileErrors
from detectors.registry import DETECTORS

from .fields import DEFAULT_BY, check_field, field_getter, known_fields, series_label, series_reader
from .pricing import PriceTable
from .reference import ReferenceFileError, load_reference
from .rule import Rule, RuleSet
from .selector import parse_selector
from .template import compile_template
from .yamlfile import YamlDocument, load_yaml

__all__ = ["load_rules", "load_rule_file"]

_LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_OBSERVATION_KEYS = ("kind", "field", "equals", "reference_file", "reference_column")


def _duration(value: Any) -> float:
    return parse_duration(value)


class _RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=False)

    alert: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_:]*$")
    source: Literal["inference", "llm", "gpu", "retrieval", "feedback"]
    match: str = "{}"
    by: list[str] | None = None
    detector: dict[str, Any]
    for_: float = Field(default=0.0, alias="for")
    keep_firing_for: float = 0.0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    actions: list[dict[str, Any]] = Field(default_factory=list)

    _durations = field_validator("for_", "keep_firing_for", mode="before")(_duration)

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # Prometheus label values are strings; accept YAML numbers and booleans as written.
        # Lists and mappings are left for pydantic to reject: a label value is never "[1]".
        if isinstance(value, dict):
            return {k: _label_value(v) for k, v in value.items()}
        return value


def _label_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    return str(v) if isinstance(v, (int, float)) else v


class _GroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    rules: list[Any] = Field(default_factory=list)


class _FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[_GroupSpec]


_KNOWN_KEYS = {
    "file": tuple(_FileSpec.model_fields),
    "group": tuple(_GroupSpec.model_fields),
    "rule": tuple(f.alias or n for n, f in _RuleSpec.model_fields.items()),
}


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Collector:
    """Gathers errors for one file with the group/rule context Prometheus prints."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.errors: list[RuleError] = []

    def context(self, path: Sequence[Any]) -> str:
        if len(path) >= 2 and path[0] == "groups" and isinstance(path[1], int):
            groups = self.doc.data.get("groups") if isinstance(self.doc.data, dict) else None
            group = groups[path[1]] if isinstance(groups, list) and path[1] < len(groups) else None
            gname = group.get("name") if isinstance(group, dict) else None
            text = f'group "{gname}"' if gname else f"group {path[1] + 1}"
            if len(path) >= 4 and path[2] == "rules" and isinstance(path[3], int) and isinstance(group, dict):
                rules = group.get("rules")
                rule = rules[path[3]] if isinstance(rules, list) and path[3] < len(rules) else None
                rname = rule.get("alert") if isinstance(rule, dict) else None
                text += f", rule {path[3] + 1}" + (f' "{rname}"' if rname else "")
            return text
        return ""

    def add(self, path: Sequence[Any], reason: str, *, key: bool = False) -> None:
        self.errors.append(RuleError(reason, self.doc.where(path, key=key), self.context(path)))


def _schema_errors(exc: ValidationError, out: _Collector, prefix: tuple[Any, ...] = ()) -> set[str]:
    """Report pydantic's errors at their YAML positions; return the rule keys at fault."""
    bad_keys: set[str] = set()
    for err in exc.errors():
        loc = prefix + tuple("for" if p == "for_" else p for p in err["loc"])
        if err["loc"]:
            bad_keys.add(str(err["loc"][0]))
        kind = err["type"]
        if kind == "extra_forbidden":
            level = "rule" if "rules" in loc else "group" if "groups" in loc and len(loc) > 2 else "file"
            if len(loc) == 2 and loc[0] == "groups":
                level = "group"
            name = str(loc[-1])
            out.add(loc, f"unknown key {name!r}{_suggest(name, _KNOWN_KEYS[level])}", key=True)
        elif kind == "missing":
            out.add(loc[:-1], f"missing required key {loc[-1]!r}")
        elif kind == "literal_error" and loc[-1] == "source":
            out.add(loc, f"source must be one of inference, llm, gpu, retrieval, feedback, got {err['input']!r}")
        elif kind == "model_type" and loc[-2:-1] == ("groups",):
            out.add(loc, "a group must be a mapping with 'name' and 'rules'")
        else:
            # name the value from its group or rule: "by.0", "labels.team", not a bare "0"
            rel = list(loc)
            while len(rel) > 2 and rel[0] in ("groups", "rules") and isinstance(rel[1], int):
                rel = rel[2:]
            msg = err["msg"].removeprefix("Value error, ")
            out.add(loc, f"{'.'.join(map(str, rel))}: {msg}")
    return bad_keys


def load_rule_file(path: str | Path, text: str | None = None, prices: PriceTable | None = None) -> list[Rule]:
    """Rules of one file; raises ``RuleFileErrors`` listing every problem found."""
    doc = load_yaml(path, text)
    out = _Collector(doc)
    if doc.data is None:
        raise RuleFileErrors([RuleError("file is empty (expected a 'groups' list)", Location(doc.file, 1, 1))])
    if not isinstance(doc.data, dict):
        raise RuleFileErrors([RuleError("top level must be a mapping with a 'groups' list", doc.where(()))])
    try:
        spec = _FileSpec.model_validate(doc.data)
    except ValidationError as exc:
        _schema_errors(exc, out)
        # a typo in a group or at the top must not hide the rules' own problems
        _compile(_salvage(doc.data), out, prices)
        raise RuleFileErrors(out.errors) from None
    rules = _compile(spec.groups, out, prices)
    if out.errors:
        raise RuleFileErrors(out.errors)
    return rules


def _salvage(data: dict[str, Any]) -> list[_GroupSpec | None]:
    """The groups that validate once their unknown keys are dropped (None for the others),
    at their original indices, so that their rules can still be checked."""
    groups = data.get("groups")
    out: list[_GroupSpec | None] = []
    for group in groups if isinstance(groups, list) else ():
        if isinstance(group, dict):
            group = {k: v for k, v in group.items() if k in _GroupSpec.model_fields}
        try:
            out.append(_GroupSpec.model_validate(group))
        except ValidationError:
            out.append(None)
    return out


def _compile(groups: Sequence[_GroupSpec | None], out: _Collector, prices: PriceTable | None) -> list[Rule]:
    rules: list[Rule] = []
    seen_groups: dict[str, int] = {}
    for gi, group in enumerate(groups):
        if group is None:
            continue
        if group.name in seen_groups:
            out.add(("groups", gi, "name"), f'duplicate group name "{group.name}" (first at group {seen_groups[group.name] + 1})')
        seen_groups.setdefault(group.name, gi)
        seen_alerts: dict[str, int] = {}
        for ri, raw in enumerate(group.rules):
            path = ("groups", gi, "rules", ri)
            # names are compared before validation, so a rule with other problems still counts
            alert = raw.get("alert") if isinstance(raw, dict) else None
            if isinstance(alert, str) and alert in seen_alerts:
                out.add(path + ("alert",), f'duplicate alert name "{alert}" in group (first is rule {seen_alerts[alert] + 1})')
            if isinstance(alert, str):
                seen_alerts.setdefault(alert, ri)
            rule_spec = _validate_rule(raw, path, out)
            if rule_spec is None:
                continue
            rule = _compile_rule(group.name, rule_spec, path, out, prices)
            if rule is not None:
                rules.append(rule)
    return rules


def _validate_rule(raw: Any, path: tuple[Any, ...], out: _Collector) -> _RuleSpec | None:
    """Validate one rule; on errors, re-check it without the bad keys so that the
    remaining problems (unknown detector, bad field names) are reported in the same pass."""
    if not isinstance(raw, dict):
        out.add(path, "a rule must be a mapping with at least 'alert', 'source' and 'detector'")
        return None
    try:
        return _RuleSpec.model_validate(raw)
    except ValidationError as exc:
        bad = _schema_errors(exc, out, path)
    try:
        spec = _RuleSpec.model_validate({k: v for k, v in raw.items() if k not in bad and k != "for_"})
    except ValidationError:
        return None
    _compile_rule("", spec, path, out)  # report the rest; the rule itself stays rejected
    return None


def _compile_rule(
    group: str, spec: _RuleSpec, path: tuple[Any, ...], out: _Collector, prices: PriceTable | None = None
) -> Rule | None:
    before = len(out.errors)
    source = spec.source

    def field_ok(name: Any, where: tuple[Any, ...]) -> bool:
        if not isinstance(name, str):
            out.add(where, f"field name must be a string, got {name!r}")
            return False
        problem = check_field(source, name)
        if problem:
            out.add(where, problem + _suggest(name, known_fields(source)))
            return False
        return True

    try:
        matchers = parse_selector(spec.match)
    except ValueError as exc:
        out.add(path + ("match",), f"match: {exc}")
        matchers = []
    for m in matchers:
        field_ok(m.name, path + ("match",))

    by = tuple(spec.by) if spec.by is not None else DEFAULT_BY[source]
    for i, name in enumerate(by):
        field_ok(name, path + ("by", i) if spec.by is not None else path)
    if len(set(by)) != len(by):
        out.add(path + ("by",), "by lists a field twice")

    det = dict(spec.detector)
    dpath = path + ("detector",)
    kind = det.pop("kind", None)
    obs_field = det.pop("field", None)
    equals = det.pop("equals", None)
    reference_file = det.pop("reference_file", None)
    reference_column = det.pop("reference_column", None)
    detector_class = None
    params: dict[str, Any] = {}
    if kind is None:
        out.add(dpath, "detector: missing required key 'kind'")
    elif not isinstance(kind, str) or kind not in DETECTORS:
        out.add(dpath + ("kind",), f'unknown detector "{kind}"{_suggest(str(kind), DETECTORS)}')
    else:
        detector_class = DETECTORS[kind]
    if obs_field is None:
        out.add(dpath, "detector: missing required key 'field' (the event field the detector observes)")
    else:
        field_ok(obs_field, dpath + ("field",))
    if equals is not None and not isinstance(equals, (str, int, float)):
        out.add(dpath + ("equals",), "detector.equals must be a scalar")
    if detector_class is not None:
        allowed = detector_class.param_names()
        for name, value in det.items():
            if name not in allowed:
                out.add(dpath + (name,), f'unknown parameter "{name}" for detector "{kind}"{_suggest(name, allowed + _OBSERVATION_KEYS)}', key=True)
                continue
            if name.endswith("_s") and isinstance(value, str):
                try:
                    value = parse_duration(value)
                except ValueError as exc:
                    out.add(dpath + (name,), f"{name}: {exc}")
                    continue
            params[name] = value
        if reference_file is not None or reference_column is not None:
            _reference_from_file(detector_class, reference_file, reference_column, obs_field, params, dpath, out)
        if len(out.errors) == before:
            try:
                detector_class(**params)
            except DetectorError as exc:
                out.add(_param_at_fault(str(exc), kind, params, dpath), f'detector "{kind}": {exc}')
            except TypeError as exc:
                out.add(dpath, f'detector "{kind}": {exc}')

    for name in spec.labels:
        if not _is_label_name(name) or name == "alertname":
            out.add(path + ("labels", name), f"invalid label name {name!r}", key=True)
    series_labels = tuple(series_label(n) for n in by)
    carried = set(series_labels) | set(spec.labels) | {"alertname"}
    annotations = {}
    for name, text in spec.annotations.items():
        try:
            annotations[name] = compile_template(text, carried)
        except ValueError as exc:
            out.add(path + ("annotations", name), f"annotation {name!r}: {exc}")

    for ai, action in enumerate(spec.actions):
        atype = action.get("type")
        if not isinstance(atype, str) or atype not in ACTIONS:
            known = ", ".join(ACTIONS) or "none are available yet"
            out.add(path + ("actions", ai), f'unknown action type "{atype}" (known: {known}){_suggest(str(atype), ACTIONS)}')
            continue
        _check_action(ACTIONS[atype], action, path + ("actions", ai), ai, out)

    if len(out.errors) != before or detector_class is None or obs_field is None:
        return None
    return Rule(
        id=f"{group}/{spec.alert}",
        group=group,
        name=spec.alert,
        source=source,
        selector=spec.match,
        by=by,
        field=obs_field,
        equals=None if equals is None else str(equals),
        detector_class=detector_class,
        detector_params=params,
        for_s=spec.for_,
        keep_firing_for_s=spec.keep_firing_for,
        labels=dict(spec.labels),
        annotations=annotations,
        actions=tuple(spec.actions),
        location=out.doc.where(path),
        match_fields=tuple(sorted({m.name for m in matchers})),
        _matchers=tuple(m.compile() for m in matchers),
        _by_getters=tuple(field_getter(n) for n in by),
        _by_labels=series_labels,
        _field_getter=field_getter(obs_field, prices),
        _by_fast=series_reader(source, by),
        _categorical=detector_class.observes == "category",
        _vector=detector_class.observes == "vector",
    )


def _check_action(kind: Any, entry: dict[str, Any], where: tuple[Any, ...], index: int, out: _Collector) -> None:
    """Validate one ``actions[]`` entry with its kind's Params; each error at its field's line."""
    try:
        kind.Params.model_validate(entry)
    except ValidationError as exc:
        fields = tuple(f.alias or n for n, f in kind.Params.model_fields.items())
        label = f'action {index + 1} "{entry.get("type")}"'
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                name = str(loc[-1])
                out.add(where + loc[:1], f"{label}: unknown key {name!r}{_suggest(name, fields)}", key=True)
            elif err["type"] == "missing":
                out.add(where, f"{label}: missing required key {'.'.join(map(str, loc))!r}")
            else:
                field = ".".join(map(str, loc))
                msg = err["msg"].removeprefix("Value error, ")
                out.add(where + loc[:1], f"{label}: {field + ': ' if field else ''}{msg}")


def _param_at_fault(message: str, kind: Any, params: dict[str, Any], dpath: tuple[Any, ...]) -> tuple[Any, ...]:
    """Where a detector's complaint points: the parameter its message starts with, when the
    rule sets it (``window_s must be ...`` -> the ``window_s:`` line), else ``detector:``."""
    word = re.match(r"(\w+)", message.removeprefix(f"{kind}: "))
    name = word.group(1) if word else ""
    return dpath + (name,) if name in params else dpath


def _reference_from_file(
    detector_class: type, file: Any, column: Any, obs_field: Any, params: dict[str, Any], dpath: tuple[Any, ...], out: _Collector
) -> None:
    """Read ``reference_file`` (relative to the rules file) into ``params["reference"]``, once."""
    where = dpath + ("reference_file",) if file is not None else dpath + ("reference_column",)
    if "reference" not in detector_class.param_names():
        with_reference = ", ".join(k for k, c in DETECTORS.items() if "reference" in c.param_names())
        out.add(where, f"reference_file applies only to detectors with a reference ({with_reference})")
    elif file is None:
        out.add(where, "reference_column needs a reference_file")
    elif not isinstance(file, str) or not file.strip():
        out.add(where, f"reference_file must be a path, got {file!r}")
    elif column is not None and not isinstance(column, str):
        out.add(dpath + ("reference_column",), f"reference_column must be a column or key name, got {column!r}")
    elif "reference" in params:
        out.add(where, "give reference or reference_file, not both")
    elif isinstance(obs_field, str):
        path = Path(file)
        if not path.is_absolute():
            path = Path(out.doc.file).parent / path
        try:
            params["reference"] = load_reference(
                path, field=obs_field, column=column, categorical=detector_class.observes == "category"
            )
        except ReferenceFileError as exc:
            out.add(where, f"reference_file: {exc}")


def _is_label_name(name: str) -> bool:
    return re.match(_LABEL_NAME, name) is not None


def load_rules(paths: Iterable[str | Path], prices: PriceTable | None = None) -> RuleSet:
    """Every rule of every file (directories are read for ``*.yaml``/``*.yml``).

    All files are checked before anything is returned: one bad file fails the whole
    load, which is what lets hot reload keep the old rules running.
    """
    files = _expand(paths)
    rules: list[Rule] = []
    errors: list[RuleError] = []
    group_files: dict[str, str] = {}
    for file in files:
        try:
            loaded = load_rule_file(file, prices=prices)
        except RuleFileErrors as exc:
            errors.extend(exc.errors)
            continue
        except RuleError as exc:
            errors.append(exc)
            continue
        reported: set[str] = set()
        for rule in loaded:
            first = group_files.setdefault(rule.group, str(file))
            if first != str(file) and rule.group not in reported:
                reported.add(rule.group)
                errors.append(RuleError(f'group "{rule.group}" is also defined in {first}; group names must be unique', rule.location))
        rules.extend(loaded)
    if errors:
        raise RuleFileErrors(errors)
    return RuleSet(rules=tuple(rules), files=tuple(str(f) for f in files))


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and not q.name.endswith((".test.yaml", ".test.yml"))))
        else:
            out.append(p)
    # a file named twice (``rules/ rules/a.yaml``) is loaded once, or its rules would run twice
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique
