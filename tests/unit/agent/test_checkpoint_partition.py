"""A partition's state out of one pipeline and into another: the processing continues exactly."""

from __future__ import annotations

import json

import pytest

from agent.errors import EventError
from agent.model import Alert, AlertState
from agent.runtime.partition_state import decode, restore_partition, snapshot_partition
from agent.rules import RuleSet
from agent.runtime.pipeline import Pipeline
from tests.unit.agent.rulebook import inference, one_rule

MEAN = "{kind: threshold, field: latency_ms, agg: mean, window_s: 10, op: '>', threshold: 100, min_count: 3}"
A, B = ("wk.inference", 0), ("wk.inference", 1)
WHERE = {"a": A, "b": B}


def rules(detector: str = MEAN):
    return one_rule(detector, for_="5s", keep="5s")


def stream(seconds: int = 120) -> list[tuple[tuple[str, int], object]]:
    """Two services on two partitions, an incident each (a: 30-60 s, b: 40-80 s), 2 events/s."""
    out = []
    for i in range(seconds * 2):
        ts = 1_000.0 + i / 2
        for svc, (start, end) in (("a", (30, 60)), ("b", (40, 80))):
            bad = start <= ts - 1_000 < end
            out.append((WHERE[svc], inference(ts, 400.0 if bad else 40.0 + i % 5, service=svc)))
    return out


def run(p: Pipeline, events, *, tick_every: int = 7) -> list[Alert]:
    """Process in 'batches' of ``tick_every`` events with a tick after each, as the agent does."""
    out: list[Alert] = []
    for i, (where, event) in enumerate(events):
        out += p.process(event, where)
        if i % tick_every == tick_every - 1:
            out += p.tick()
    return out + p.tick()


def key(a: Alert) -> tuple:
    return (a.fingerprint, a.state.value, a.active_at, a.fired_at, a.resolved_at, round(a.value, 9))


# cut at event time 1035 (a pending), 1050 (both firing), 1065 (a resolving), 1075 (a resolved)
@pytest.mark.parametrize("cut", [70, 100, 130, 150])
def test_restored_partitions_continue_exactly_like_an_uninterrupted_run(cut):
    events = stream()
    whole = run(Pipeline(rules()), events)
    assert {(a.labels["service"], a.state) for a in whole} == {
        (s, st) for s in "ab" for st in (AlertState.FIRING, AlertState.RESOLVED)
    }

    first = Pipeline(rules())
    before = run(first, events[: cut * 2])
    payloads = {w: snapshot_partition(first, w, offset=cut) for w in (A, B)}
    second = Pipeline(rules())
    for w, payload in payloads.items():
        assert restore_partition(second, w, payload) == []  # a restored firing alert is not paged again
    after = run(second, events[cut * 2 :])
    assert [key(a) for a in before + after] == [key(a) for a in whole]


def test_a_firing_alert_keeps_its_times_evidence_and_annotations():
    first = Pipeline(rules())
    run(first, stream()[:160])  # up to 1039.5: a pending at 1031.5, firing at 1036.5
    first.lifecycle.annotate("g/A", ("a",), {"report": "http://agent-1/reports/x.html"})
    (fired,) = first.firing()
    second = Pipeline(rules())
    restore_partition(second, A, snapshot_partition(first, A, offset=160))
    (restored,) = second.firing()
    assert restored == fired
    assert restored.annotations["report"] == "http://agent-1/reports/x.html"
    assert restored.evidence["n"] == fired.evidence["n"] and restored.evidence["threshold"] == 100


def test_a_snapshot_holds_only_its_partition_and_forget_drops_only_it():
    p = Pipeline(rules())
    run(p, stream()[:200])
    data = decode(snapshot_partition(p, A, offset=5))
    assert {tuple(s["k"]) for s, _ in data["series"]} == {("a",)}
    assert data["owners"] == {"a": pytest.approx(1049.5)} and data["offset"] == 5
    assert [a["k"] for a in data["alerts"]] == [["a"]]
    p.forget_partition(A)
    assert p.engine.series(("g/A", ("a",))) is None and p.engine.series(("g/A", ("b",))) is not None
    assert ("g/A", ("a",)) not in p.lifecycle.active
    assert p.owners_of(A) == {} and set(p.owners_of(B)) == {"b"}


def test_owner_clocks_survive_so_late_events_stay_late():
    p = Pipeline(rules(), max_lateness_s=60)
    p.process(inference(5_000, service="a"), A)
    q = Pipeline(rules(), max_lateness_s=60)
    restore_partition(q, A, snapshot_partition(p, A, offset=1))
    with pytest.raises(EventError, match="late"):
        q.process(inference(4_000, service="a"), A)
    assert q.clock == 5_000 and q.partition_clock[A] == 5_000


def test_alerts_of_a_removed_rule_resolve_and_changed_rules_start_fresh():
    first = Pipeline(rules())
    run(first, stream()[:160])
    payload = snapshot_partition(first, A, offset=1)
    other = one_rule(MEAN.replace("window_s: 10", "window_s: 20"), for_="5s", keep="5s")
    changed = Pipeline(other)
    assert restore_partition(changed, A, payload) == []
    # learned under other parameters: not restored; the alert's series has a fresh state
    # instead (issue 12: no alert without state), with nothing learned and no verdict yet
    fresh = changed.engine.series(("g/A", ("a",)))
    assert fresh is not None and fresh.last_score is None
    assert fresh.detector._dump() == fresh.rule.new_detector()._dump()  # noqa: SLF001
    assert [a.state for a in changed.firing()] == [AlertState.FIRING]  # the alert itself is kept
    (resolved,) = restore_partition(Pipeline(RuleSet()), A, payload)  # the rule was deleted meanwhile
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_at == first.partition_clock[A] == 1039.5
    assert resolved.active_at == first.firing()[0].active_at


def test_bad_payloads_raise_and_bad_entries_are_skipped(caplog):
    p = Pipeline(rules())
    with pytest.raises(ValueError):
        restore_partition(p, A, b"{not json")
    with pytest.raises(ValueError):
        restore_partition(p, A, b'{"v": 99}')
    first = Pipeline(rules())
    run(first, stream()[:200])
    payload = snapshot_partition(first, A, offset=1)
    with pytest.raises(ValueError):
        restore_partition(p, A, payload.rsplit(b"\n", 1)[0])  # a series line is missing
    head, *lines = payload.split(b"\n")
    data = json.loads(head)
    entry = json.loads(lines[0])
    data["series"] += 1
    data["alerts"].append({"r": "g/A", "k": ["zzz"], "state": "bogus"})
    bad = json.dumps({**entry, "k": ["zzz"]}).encode()
    restore_partition(p, A, b"\n".join([json.dumps(data).encode(), *lines, bad, b'{"params":{},"state":{"bad":1}}']))
    assert p.engine.series(("g/A", ("a",))) is not None and p.engine.series(("g/A", ("zzz",))) is None
    assert len(p.firing()) == 1


def test_a_lagging_partition_is_judged_at_its_own_clock():
    """B runs minutes ahead of A; A's firing alert must not resolve on B's clock."""
    p = Pipeline(rules())
    run(p, [(w, e) for w, e in stream()[:240] if w == A])  # a fires at 1036.5; A's clock at 1059.5
    assert [a.labels["service"] for a in p.firing()] == ["a"]
    p.held.add(A)  # A has a backlog
    for i in range(40):
        p.process(inference(1_200.0 + i, 40.0, service="b"), B)
    assert p.tick() == [] and len(p.firing()) == 1
    p.held.discard(A)  # caught up (nothing more came): A follows the global clock, and resolves
    assert p.tick() == []  # its window is empty at 1239: keep_firing_for (5 s) starts
    (resolved,) = p.tick(1_244.0)
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_at == 1_244.0
