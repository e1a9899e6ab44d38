"""Property-based fuzzing of the record path: the real BatchProcessor with the SHIPPED rules.

Whatever a producer writes (near-valid events with hostile field values, or raw bytes),
every record ends processed or dead-lettered with a known reason kind, the counters add
up, no exception escapes ``process`` (which would NACK the batch and stall the
partition), and every alert transition it makes encodes to standard JSON.

The examples are bounded (a few hundred batches in all) so the suite stays fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.rules import load_rules
from agent.runtime.ingest import BatchProcessor, encode_alert
from agent.runtime.pipeline import Pipeline
from agent.runtime.selfmetrics import SelfMetrics

REPO = Path(__file__).resolve().parents[3]
RULES = load_rules((str(REPO / "rules"),))
NOW = 1_800_000_000.0
TOPICS = {"inference": "watchkeeper.inference", "llm": "watchkeeper.llm", "gpu": "watchkeeper.gpu"}
KINDS = {"invalid", "empty", "oversized", "future", "late", "skew"}  # "internal" would be a bug found
FUZZ = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


class _Clock:
    def __call__(self) -> float:
        return NOW


@dataclass
class _Fixed:
    pipeline: Pipeline

    def __call__(self) -> Pipeline:
        return self.pipeline


# --- what a hostile producer writes ---------------------------------------------------
_numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, 2**63, -(2**63), 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 1e15, 1e16, 0.0, -0.0]),
)
_scalars = st.one_of(_numbers, st.booleans(), st.none(), st.text(max_size=20), st.sampled_from(["", "ok", "error", "NaN"]))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=6)
_names = st.one_of(st.sampled_from(["svc", "checkout", "chat", "node-1"]), st.text(min_size=1, max_size=12))
_ts = st.one_of(
    st.floats(min_value=NOW - 900, max_value=NOW + 30),
    st.sampled_from([NOW, NOW - 1, NOW + 1, 0, -1, 10**400, 1e300, "2027-01-15T08:00:00Z", "2027-01-15T08:00:00", "soon"]),
)


def _base(kind: str, name: str, ts: Any) -> dict[str, Any]:
    if kind == "inference":
        return {"type": kind, "ts": ts, "service": name, "model": "m", "model_version": "3", "latency_ms": 120.0, "status": "ok",
                "features": {"amount": 10.0, "country": "fr"}, "prediction": 0.4}
    if kind == "llm":
        return {"type": kind, "ts": ts, "service": name, "model": "gpt", "prompt_version": "7", "tenant": "t1",
                "prompt_tokens": 500, "completion_tokens": 200, "latency_ms": 800.0, "status": "ok", "cost_usd": 0.01}
    return {"type": kind, "ts": ts, "node": name, "gpu": 0, "util_pct": 90.0, "mem_used_bytes": 70 * 10**9,
            "mem_total_bytes": 80 * 10**9, "temp_c": 80.0, "power_w": 300.0, "xid_errors": 0}


_FIELDS = sorted({k for kind in TOPICS for k in _base(kind, "x", 0)} | {"labels", "pod", "features", "extra"})


@st.composite
def hostile_event(draw: st.DrawFn) -> tuple[str, dict[str, Any], int]:
    """A near-valid event of a random source with a few fields replaced by hostile values."""
    kind = draw(st.sampled_from(sorted(TOPICS)))
    event = _base(kind, draw(_names), draw(_ts))
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=3)):
        event[name] = draw(_values)
    if draw(st.booleans()):
        event["features" if kind == "inference" else "labels"] = draw(
            st.dictionaries(st.text(max_size=8), st.one_of(_numbers, st.text(max_size=8)), max_size=4)
        )
    ts = event.get("ts")
    base_ms = int(ts * 1000) if isinstance(ts, float) and math.isfinite(ts) and abs(ts) < 1e12 else int(NOW * 1000)
    stamp = draw(st.one_of(st.just(base_ms), st.integers(min_value=-1, max_value=2**41)))
    return kind, event, stamp


def _batch(events: list[tuple[str, bytes | None, int]]) -> list[Rec]:
    return [Rec(TOPICS.get(kind, kind), i % 2, i, b"k", value, stamp) for i, (kind, value, stamp) in enumerate(events)]


def _run(records: list[Rec]) -> None:
    """Process ``records`` in two batches through a fresh pipeline and check every invariant."""
    metrics = SelfMetrics()
    proc = BatchProcessor(
        pipeline=_Fixed(Pipeline(RULES)), metrics=metrics, clock=_Clock(), max_event_bytes=4096,
        topic_sources={v: k for k, v in TOPICS.items()}, max_event_skew_s=10.0,
    )
    half = len(records) // 2
    processed = dead = 0
    for part in (records[:half], records[half:]):
        out = proc.process(part)  # must not raise
        assert out.processed + len(out.dead_letters) == len(part)
        kinds = {dl.kind for dl in out.dead_letters}
        assert kinds <= KINDS, [dl.reason for dl in out.dead_letters if dl.kind not in KINDS]
        for dl in out.dead_letters:
            assert dl.reason.startswith(dl.kind)
        for alert in out.transitions:
            json.loads(encode_alert(alert), parse_constant=_refuse)
        processed += out.processed
        dead += len(out.dead_letters)
    for alert in proc.pipeline().firing():
        json.loads(encode_alert(alert), parse_constant=_refuse)
    counted = {
        outcome: sum(metrics.registry.get_sample_value("watchkeeper_events_total", {"source": s, "outcome": outcome}) or 0
                     for s in TOPICS)
        for outcome in ("processed", "dead_letter", "late")
    }
    assert counted["processed"] == processed
    assert counted["dead_letter"] + counted["late"] == dead
    by_kind = sum(metrics.registry.get_sample_value("watchkeeper_dead_letters_total", {"topic": t, "reason": k}) or 0
                  for t in TOPICS.values() for k in KINDS | {"internal"})
    assert by_kind == dead


def _refuse(name: str) -> None:
    raise AssertionError(f"{name} in an encoded alert is not standard JSON")


@FUZZ
@given(st.lists(hostile_event(), min_size=1, max_size=12))
def test_hostile_events_through_the_shipped_rules(events: list[tuple[str, dict[str, Any], int]]) -> None:
    _run(_batch([(kind, json.dumps(e, allow_nan=True).encode(), stamp) for kind, e, stamp in events]))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(TOPICS)), st.one_of(st.none(), st.binary(max_size=300)), st.integers(-1, 2**41)), max_size=12))
def test_raw_bytes_through_the_shipped_rules(records: list[tuple[str, bytes | None, int]]) -> None:
    _run(_batch(records))


@FUZZ
@given(st.lists(hostile_event(), min_size=1, max_size=6), st.data())
def test_mangled_json_through_the_shipped_rules(events: list[tuple[str, dict[str, Any], int]], data: st.DataObject) -> None:
    """Valid-looking JSON with a few bytes flipped, cut or repeated: parsers' edge cases."""
    raw = []
    for kind, event, stamp in events:
        body = bytearray(json.dumps(event, allow_nan=True).encode())
        for _ in range(data.draw(st.integers(0, 3))):
            at = data.draw(st.integers(0, max(0, len(body) - 1)))
            body[at:at + 1] = data.draw(st.sampled_from([b"", b"9" * 30, b"\xff", b"{", b'"', b"e999", b"\\u0000"]))
        raw.append((kind, bytes(body), stamp))
    _run(_batch(raw))


@FUZZ
@given(st.integers(min_value=2, max_value=40), st.floats(min_value=60, max_value=900))
def test_forged_bursts_never_fire_a_for_rule_within_the_bound(n: int, span_s: float) -> None:
    """``n`` records at one record timestamp, ``ts`` spread over ``span_s``: no ``for`` longer than 20 s fires."""
    proc = BatchProcessor(
        pipeline=_Fixed(Pipeline(RULES)), metrics=SelfMetrics(), clock=_Clock(), topic_sources={v: k for k, v in TOPICS.items()},
        max_event_skew_s=10.0,
    )
    records = []
    for i in range(n):
        event = _base("inference", "checkout", NOW - span_s + i * span_s / (n - 1))
        event.update(latency_ms=50_000.0, status="error")
        records.append(Rec(TOPICS["inference"], 0, i, b"checkout", json.dumps(event).encode(), int(NOW * 1000)))
    out = proc.process(records)
    by_id = RULES.by_id()
    for alert in out.transitions:
        rule = by_id[alert.rule_id]
        if alert.fired_at is not None:
            assert rule.for_s <= 20.0, (rule.id, alert.active_at, alert.fired_at)
