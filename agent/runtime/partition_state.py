"""What one input partition owns inside a ``Pipeline``, as a checkpoint payload, and back.

Events are keyed by their owner (service or node), so one owner's events arrive on one
partition, and a partition's state is the state its events built: every (rule, series)
whose latest event came from it (detector, last verdict, first event time for series
admission), the alerts of those series
(state, ``active_at``, ``fired_at``, the evidence and extra annotations such as report
links), its owners' event clocks and the partition's own clock.

Restoring that state into another agent continues the same processing: the learned
baselines are the same, a firing alert is firing (no second "fired" notification, the
same fingerprint and ``active_at``), a pending one keeps its ``active_at``.

A series whose rule changed what it learns (detector kind, parameters, field, ``by``)
since the checkpoint starts from a fresh detector, as on a rule reload; an alert whose
rule is gone is resolved, as Prometheus resolves alerts of a removed rule.

Limitation, by construction: a rule whose ``by`` does not contain the owner (e.g. ``by:
[model]`` across services) sees events of one series on several partitions. In fleet
mode each member then keeps its own share of such a series, and the state follows the
partition of the series' latest event.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from agent.logs import get_logger
from agent.model import Alert, AlertState, Score
from agent.rules import Rule, RuleSet

from .alerts import TrackedAlert
from .engine import SeriesState
from .pipeline import DetachedPartition, Pipeline

__all__ = ["decode", "decode_partition", "learning_hash", "restore_partition", "snapshot_partition", "snapshot_partitions"]

_log = get_logger(__name__)
VERSION = 2


def learning_hash(rule: Rule) -> str:
    """What a series' learned state depends on; a change means a fresh detector."""
    spec = {
        "kind": rule.detector_class.kind,
        "params": _jsonable(dict(rule.detector_params)),
        "field": rule.field,
        "equals": rule.equals,
        "by": list(rule.by),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _score(score: Score | None) -> Any:
    if score is None:
        return None
    return [score.score, score.active, score.value, _jsonable(dict(score.evidence))]


def _unscore(data: Any) -> Score | None:
    if data is None:
        return None
    score, active, value, evidence = data
    return Score(float(score), bool(active), float(value), dict(evidence))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def snapshot_partition(pipeline: Pipeline, where: tuple[str, int], offset: int) -> bytes:
    """The state partition ``where`` owns, as bytes, at ``offset`` (the next to read)."""
    return snapshot_partitions(pipeline, {where: offset})[where]


def snapshot_partitions(pipeline: Pipeline, offsets: dict[Any, int]) -> dict[Any, bytes]:
    """The states of several partitions (``where`` -> offset) in one pass over the series.

    Layout of each: one JSON line (version, offset, clocks, owners, alerts), then two lines
    per series: its head (rule, key, learning hash, last event time and verdict) and its
    detector's state as ``Detector.restore`` reads it. A restore parses every detector
    state once, and nothing is escaped: JSON never contains a raw newline. Reads the
    pipeline only, so it may run in a thread while the caller holds the fleet lock.
    """
    per_rule: dict[str, tuple[bytes, str]] = {}
    lines: dict[Any, list[bytes]] = {where: [] for where in offsets}
    alerts: dict[Any, list[dict[str, Any]]] = {where: [] for where in offsets}
    active = pipeline.lifecycle.active
    for skey, state in pipeline.engine.items():
        out = lines.get(state.where)
        if out is None:
            continue
        rule = state.rule
        cached = per_rule.get(rule.id)
        if cached is None:
            # the rule's own parameters: what ``rule.new_detector()`` was built with
            cached = per_rule[rule.id] = (_dumps(_jsonable(dict(rule.detector_params))).encode(), learning_hash(rule))
        params, learned = cached
        head = {"r": rule.id, "k": list(state.key), "h": learned, "t": state.last_ts, "s": _score(state.last_score)}
        if state.born != float("-inf"):  # an unproven series stays unproven on another member
            head["b"] = state.born
        out.append(_dumps(head).encode())
        # ``_dump`` is the detector's documented checkpoint hook; ``state()`` would rebuild
        # the parameters by introspection for every series (a third of the encoding time)
        body = _dumps(state.detector._dump()).encode()  # noqa: SLF001
        out.append(b'{"params":' + params + b',"state":' + body + b"}")
        tracked = active.get(skey)
        if tracked is not None:
            alerts[state.where].append(_alert_entry(tracked))
    payloads = {}
    for where, offset in offsets.items():
        head = {
            "v": VERSION,
            "where": list(where),
            "offset": offset,
            "clock": pipeline.partition_clock.get(where, float("-inf")),
            "owners": pipeline.owners_of(where),
            "alerts": alerts[where],
            "series": len(lines[where]) // 2,
        }
        payloads[where] = b"\n".join([_dumps(head).encode(), *lines[where]])
    return payloads


def _alert_entry(t: TrackedAlert) -> dict[str, Any]:
    snap = t.snapshot()
    return {
        "r": t.rule.id,
        "k": list(t.key),
        "labels": dict(t.labels),
        "fp": t.fingerprint,
        "state": t.state.value,
        "active_at": t.active_at,
        "fired_at": t.fired_at,
        "keep_since": t.keep_since,
        "score": _score(t.score),
        "extra": dict(t.extra_annotations),
        "annotations": dict(snap.annotations),
    }


def decode(payload: bytes) -> dict[str, Any]:
    """The head and the (series head, detector state bytes) pairs; ``ValueError`` if unreadable."""
    lines = payload.split(b"\n")
    head = json.loads(lines[0])
    if not isinstance(head, dict) or head.get("v") != VERSION:
        raise ValueError(f"unknown partition state version {head.get('v') if isinstance(head, dict) else None!r}")
    if len(lines) != 1 + 2 * int(head.get("series", 0)):
        raise ValueError(f"partition state has {len(lines) - 1} series lines, expected {2 * int(head['series'])}")
    head["series"] = [(json.loads(lines[i]), lines[i + 1]) for i in range(1, len(lines), 2)]
    return head


def restore_partition(pipeline: Pipeline, where: tuple[str, int], payload: bytes) -> list[Alert]:
    """Put a partition's checkpointed state into ``pipeline``; return alerts to publish.

    Only alerts of removed rules produce transitions (RESOLVED). A series or alert
    that cannot be restored is skipped with a log line, never an exception; a payload
    that cannot be decoded at all raises ``ValueError`` (the partition starts fresh).
    """
    part, transitions = decode_partition(pipeline.rules, where, payload)
    pipeline.attach_partition(part)
    return transitions


def decode_partition(rules: RuleSet, where: tuple[str, int], payload: bytes) -> tuple[DetachedPartition, list[Alert]]:
    """The live objects of a checkpoint, not yet in any pipeline (safe to run in a thread)."""
    data = decode(payload)
    by_id = rules.by_id()
    hashes: dict[str, str] = {}
    series = []
    fresh = 0
    for entry, blob in data.get("series", ()):
        try:
            rule = by_id.get(entry["r"])
            if rule is None:
                continue
            h = hashes.get(rule.id)
            if h is None:
                h = hashes[rule.id] = learning_hash(rule)
            if h != entry["h"]:
                fresh += 1
                continue
            detector = rule.detector_class.restore(blob)
            key = tuple(str(k) for k in entry["k"])
            born = float(entry.get("b", float("-inf")))
            series.append(((rule.id, key), SeriesState(rule, key, detector, float(entry["t"]), _unscore(entry["s"]), where, born)))
        except Exception as exc:  # noqa: BLE001 - one bad series must not cost the others
            _log.warning("cannot restore a series; it starts fresh", where=list(where), rule=entry.get("r"), error=repr(exc))
    clock = float(data.get("clock", float("-inf")))
    alerts: dict[Any, TrackedAlert] = {}
    out: list[Alert] = []
    for entry in data.get("alerts", ()):
        try:
            tracked, resolved = _restore_alert(by_id, entry, clock)
        except Exception as exc:  # noqa: BLE001
            _log.warning("cannot restore an alert", where=list(where), fingerprint=entry.get("fp"), error=repr(exc))
            continue
        if tracked is not None:
            alerts[(tracked.rule.id, tracked.key)] = tracked
        if resolved is not None:
            out.append(resolved)
    owners = {str(k): float(v) for k, v in dict(data.get("owners", {})).items()}
    if fresh:
        _log.info("series of changed rules start fresh after restore", where=list(where), series=fresh)
    return DetachedPartition(where, rules, series, alerts, owners, clock), out


def _restore_alert(rules: dict[str, Rule], entry: dict[str, Any], clock: float) -> tuple[TrackedAlert | None, Alert | None]:
    key = tuple(str(k) for k in entry["k"])
    state = AlertState(entry["state"])
    score = _unscore(entry["score"]) or Score(0.0, False, math.nan)
    rule = rules.get(entry["r"])
    if rule is None:  # the rule is gone: resolve what was firing, forget what was pending
        if state is not AlertState.FIRING:
            return None, None
        return None, Alert(
            fingerprint=entry["fp"],
            rule_id=entry["r"],
            state=AlertState.RESOLVED,
            labels=dict(entry["labels"]),
            annotations=dict(entry.get("annotations", {})),
            active_at=float(entry["active_at"]),
            value=score.value,
            fired_at=entry.get("fired_at"),
            resolved_at=clock,
            evidence=dict(score.evidence),
            series=key,
        )
    tracked = TrackedAlert(
        rule,
        key,
        dict(entry["labels"]),
        str(entry["fp"]),
        state,
        float(entry["active_at"]),
        score,
        fired_at=entry.get("fired_at"),
        keep_since=entry.get("keep_since"),
        extra_annotations=dict(entry.get("extra", {})),
    )
    return tracked, None
