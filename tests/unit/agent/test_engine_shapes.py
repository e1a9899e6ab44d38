"""The engine's shortcuts: memoised event shapes, slots pointing at states, specialised readers.

Each shortcut must give exactly what the plain path gives (``rule.matches``,
``rule.series``, ``rule.observe``, a table lookup), including after the state a slot
points at has left the table.
"""

from __future__ import annotations

import itertools

import pytest

from agent.model import EVENT_ADAPTER
from agent.runtime import engine as engine_module
from agent.runtime.engine import RuleEngine, _observer
from agent.runtime.pipeline import Pipeline
from tests.unit.agent.rulebook import inference, one_rule, rules_from

MEAN = "{kind: threshold, field: latency_ms, agg: mean, window_s: 100, op: '>', threshold: 1000}"

OBSERVED = """
groups:
  - name: g
    rules:
      - {alert: Lat, source: inference, detector: {kind: threshold, field: latency_ms, op: '>', threshold: 1}}
      - {alert: Err, source: inference, detector: {kind: threshold, field: status, equals: error, op: '>', threshold: 0}}
      - {alert: Ver, source: inference, detector: {kind: threshold, field: model_version, equals: '2', op: '>', threshold: 0}}
      - {alert: Amount, source: inference, detector: {kind: threshold, field: features.amount, op: '>', threshold: 1}}
      - {alert: Tier, source: inference, detector: {kind: threshold, field: features.tier, equals: gold, op: '>', threshold: 0}}
      - {alert: Pred, source: inference, detector: {kind: threshold, field: prediction, op: '>', threshold: 0}}
      - {alert: PredEq, source: inference, detector: {kind: threshold, field: prediction, equals: '1', op: '>', threshold: 0}}
      - {alert: Tokens, source: llm, detector: {kind: threshold, field: total_tokens, op: '>', threshold: 1}}
      - {alert: Gpu, source: gpu, detector: {kind: threshold, field: gpu, equals: '3', op: '>', threshold: 0}}
"""


def _events() -> list:
    out = []
    for latency, status, version, features, prediction in itertools.product(
        (0, 12.5, 7),
        ("ok", "error"),
        ("1", 2),
        ({}, {"amount": 3}, {"amount": 2.5, "tier": "gold"}, {"tier": 7.0}),
        (None, 1, 1.0, "1", "yes", 0.25),
    ):
        out.append(
            EVENT_ADAPTER.validate_python(
                {
                    "type": "inference", "ts": 1, "service": "s", "model": "m", "model_version": version,
                    "latency_ms": latency, "status": status, "features": features, "prediction": prediction,
                }
            )
        )
    out.append(EVENT_ADAPTER.validate_python({"type": "llm", "ts": 1, "service": "s", "model": "m", "prompt_version": "p",
                                              "tenant": "t", "prompt_tokens": 3, "completion_tokens": 4, "latency_ms": 1, "status": "ok"}))
    for gpu in (3, "3", "GPU-3"):
        out.append(EVENT_ADAPTER.validate_python({"type": "gpu", "ts": 1, "node": "n", "gpu": gpu, "util_pct": 1,
                                                  "mem_used_bytes": 1, "mem_total_bytes": 2, "temp_c": 40, "power_w": 100}))
    return out


def test_specialised_readers_observe_what_rule_observe_does():
    rules = rules_from(OBSERVED)
    events = _events()
    for rule in rules.rules:
        fast = _observer(rule)
        for event in events:
            if event.type != rule.source:
                continue
            expected, got = rule.observe(event), fast(event)
            assert got == expected and type(got) is type(expected), (rule.name, event)


def test_a_required_float_field_is_read_without_a_python_frame():
    rules = rules_from(OBSERVED).by_id()
    assert type(_observer(rules["g/Lat"])).__name__ == "attrgetter"
    # equals on a string-only field is one comparison; on anything else, rule.observe's str() rules
    assert _observer(rules["g/Err"]).__name__ == "indicator"
    assert _observer(rules["g/Tier"]) == rules["g/Tier"].observe


def test_an_evicted_series_comes_back_as_a_fresh_state_in_the_table():
    p = Pipeline(one_rule(MEAN, by="[service]"), max_series=2)
    for i, svc in enumerate(["a", "b", "a", "c", "d", "a"]):
        p.process(inference(float(i), 10.0, service=svc))
    engine = p.engine
    assert len(engine) <= 3 and engine.evicted >= 1
    state = engine.series(("g/A", ("a",)))
    assert state is not None and state.last_ts == 5.0
    # every state the shapes point at is the one in the table: no orphan is fed
    shapes = engine._shapes.sources.values()  # noqa: SLF001 - the invariant under test
    linked = [slot for _, _, cache in shapes for slots in cache.values() for slot in slots]
    assert linked and all(slot.state is None or engine.series(slot.skey) is slot.state for slot in linked)


def test_an_adopted_state_replaces_the_one_the_shapes_point_at():
    p = Pipeline(one_rule(MEAN, by="[service]"))
    p.process(inference(0.0, 10.0, service="a"))
    engine = p.engine
    skey = ("g/A", ("a",))
    old = engine.series(skey)
    assert old is not None
    fresh = engine_module.SeriesState(old.rule, old.key, old.rule.new_detector(), 0.0)
    engine.adopt(skey, fresh)
    p.process(inference(1.0, 5000.0, service="a"))
    assert engine.series(skey) is fresh and fresh.last_ts == 1.0
    assert old.last_ts == 0.0 and not old.slots


def test_dropped_partition_states_are_not_fed_again():
    p = Pipeline(one_rule(MEAN, by="[service]"))
    p.process(inference(0.0, 10.0, service="a"), ("t", 0))
    engine = p.engine
    gone = engine.series(("g/A", ("a",)))
    assert engine.drop_where(("t", 0)) == 1
    p.process(inference(1.0, 10.0, service="a"), ("t", 1))
    again = engine.series(("g/A", ("a",)))
    assert again is not None and again is not gone and again.where == ("t", 1)
    assert gone is not None and gone.last_ts == 0.0


def test_a_full_shape_cache_starts_over_with_the_same_results(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(engine_module, "_SHAPE_CACHE_ENTRIES", 3)
    rules = one_rule(MEAN, by="[service, model]", match='{service=~"s[0-4]"}')
    small, plain = Pipeline(rules), Pipeline(rules)
    monkeypatch.setattr(engine_module, "_SHAPE_CACHE_ENTRIES", 3)
    for i in range(200):
        event = inference(float(i), 900.0 + 20 * (i % 7), service=f"s{i % 9}", model=f"m{i % 4}")
        assert [a.fingerprint for a in small.process(event)] == [a.fingerprint for a in plain.process(event)]
    assert small.engine._shapes.entries() <= 3  # noqa: SLF001
    # a state links only slots of cached shapes: what the cache let go is not kept alive
    cached = {id(slot) for _, _, cache in small.engine._shapes.sources.values() for slots in cache.values() for slot in slots}  # noqa: SLF001
    assert all(id(slot) in cached for _, state in small.engine.items() for slot in state.slots)
    assert {k for k, _ in small.engine.items()} == {k for k, _ in plain.engine.items()} and len(small.engine) == 20


def test_one_state_is_shared_by_the_shapes_of_a_coarser_key():
    coarse_and_fine = f"""
groups:
  - name: g
    rules:
      - {{alert: A, source: inference, by: [service], detector: {MEAN}}}
      - {{alert: B, source: inference, by: [service, model], detector: {MEAN}}}
"""
    engine = RuleEngine(rules_from(coarse_and_fine))
    for i, model in enumerate(["m1", "m2", "m3"]):
        engine.observe("inference", inference(float(i), 10.0, service="a", model=model), float(i))
    state = engine.series(("g/A", ("a",)))
    assert len(engine) == 4 and state is not None and len(state.slots) == 3
    assert state.detector._ts[-1] == 2.0 and len(state.detector._ts) == 3  # noqa: SLF001


@pytest.mark.parametrize("match", ["{}", '{labels.team="a"}'])
def test_rules_keyed_by_a_derived_or_map_field_read_it_as_their_own_reader_does(match: str):
    rules = rules_from(
        f"""
groups:
  - name: g
    rules:
      - {{alert: Spend, source: llm, by: [tenant, spend_usd], match: '{match}',
         detector: {{kind: threshold, field: total_tokens, op: '>', threshold: 5}}}}
"""
    )
    engine = RuleEngine(rules)
    event = EVENT_ADAPTER.validate_python(
        {"type": "llm", "ts": 1, "service": "s", "model": "m", "prompt_version": "p", "tenant": "t", "prompt_tokens": 3,
         "completion_tokens": 4, "latency_ms": 1, "status": "ok", "cost_usd": 0.5, "labels": {"team": "a"}}
    )
    found = engine.observe("llm", event, 1.0)
    assert [f.series for f in found] == [rules.rules[0].series(event)] == [("t", "0.5")]
