"""Engine and pipeline: dispatch, series keys, bounds, late events, reload keeping state."""

from __future__ import annotations

import pytest

from agent.errors import EventError
from agent.model import AlertState
from agent.runtime.pipeline import Pipeline
from tests.unit.agent.rulebook import inference, one_rule, rules_from

MEAN = "{kind: threshold, field: latency_ms, agg: mean, window_s: 10, op: '>', threshold: 100}"


def test_only_matching_events_reach_the_rule():
    p = Pipeline(one_rule("{kind: threshold, field: latency_ms, op: '>', threshold: 100}", match='{service=~"pay.*", model!="canary"}'))
    assert p.process(inference(0, 500, service="search")) == []
    assert p.process(inference(0, 500, service="pay", model="canary")) == []
    assert len(p.process(inference(0, 500, service="payments"))) == 1
    assert len(p.engine) == 1


def test_match_result_does_not_leak_between_field_values():
    # the dispatch memo is keyed on the selector's fields; a different value must re-match
    p = Pipeline(one_rule("{kind: threshold, field: latency_ms, op: '>', threshold: 100}", match='{service="a"}'))
    for i in range(3):
        assert len(p.process(inference(i, 500, service="a"))) <= 1
        assert p.process(inference(i, 500, service="b")) == []
    assert len(p.engine) == 1


def test_by_map_fields_and_equals():
    rules = one_rule("{kind: threshold, field: status, equals: error, op: '==', threshold: 1}", by="[service, labels.region, features.tier]")
    p = Pipeline(rules)
    got = p.process(inference(0, status="error", labels={"region": "eu"}, features={"tier": "gold"}))
    assert got[0].labels == {"service": "svc", "region": "eu", "tier": "gold", "severity": "page", "alertname": "A"}
    assert p.process(inference(1, status="ok", labels={"region": "us"})) == []


def test_event_without_the_observed_field_is_skipped():
    p = Pipeline(one_rule("{kind: threshold, field: features.score, op: '>', threshold: 0.5}"))
    assert p.process(inference(0, features={"other": 1.0})) == []
    assert p.process(inference(0, features={"score": "high"})) == []  # strings are not observations
    assert len(p.engine) == 0
    assert len(p.process(inference(1, features={"score": 0.9}))) == 1


def test_series_table_is_bounded_and_evicts_the_idle():
    p = Pipeline(one_rule(MEAN), max_series=3)
    for i, svc in enumerate(["a", "b", "c", "d"]):
        p.process(inference(i, 10, service=svc))
    assert len(p.engine) == 3
    assert p.engine.evicted == 1
    assert p.engine.series(("g/A", ("a",))) is None


def test_series_with_an_alert_is_never_evicted():
    p = Pipeline(one_rule("{kind: threshold, field: latency_ms, op: '>', threshold: 100}"), max_series=2)
    p.process(inference(0, 500, service="firing"))
    for i, svc in enumerate(["b", "c", "d"]):
        p.process(inference(i + 1, 10, service=svc))
    assert p.engine.series(("g/A", ("firing",))) is not None
    assert [a.state for a in p.process(inference(9, 10, service="firing"))] == [AlertState.RESOLVED]


def test_out_of_order_event_is_evaluated_at_the_series_clock():
    p = Pipeline(one_rule(MEAN))
    p.process(inference(100, 10))
    p.process(inference(95, 10))  # 5 s late: accepted, clamped to t=100
    assert p.engine.series(("g/A", ("svc",))).last_ts == 100


def test_event_older_than_max_lateness_is_rejected():
    p = Pipeline(one_rule(MEAN), max_lateness_s=60)
    p.process(inference(1000, 10))
    p.process(inference(941, 10))
    with pytest.raises(EventError, match="late"):
        p.process(inference(939, 10))


def test_lateness_is_per_owner():
    p = Pipeline(one_rule(MEAN), max_lateness_s=60)
    p.process(inference(1000, 10, service="ahead"))
    p.process(inference(500, 10, service="behind"))  # another owner's clock: fine


def test_reload_keeps_learned_state_of_unchanged_rules():
    text = """
groups:
  - name: g
    rules:
      - alert: A
        source: inference
        detector: {kind: threshold, field: latency_ms, agg: mean, window_s: 100, op: '>', threshold: 100}
"""
    p = Pipeline(rules_from(text))
    for t in range(5):
        p.process(inference(t, 10))
    state = p.engine.series(("g/A", ("svc", "m")))
    p.reload(rules_from(text + "        labels: {team: x}\n"))
    assert p.engine.series(("g/A", ("svc", "m"))) is state
    p.reload(rules_from(text.replace("threshold: 100", "threshold: 50")))
    assert p.engine.series(("g/A", ("svc", "m"))) is None


def test_tick_sweep_finds_a_condition_that_time_alone_makes_true():
    # traffic drop: fewer than 5 requests in 30 s. svc "quiet" stops sending after t=19;
    # only svc "busy" keeps the event clock moving, yet "quiet" must fire on a sweep
    p = Pipeline(one_rule("{kind: threshold, field: latency_ms, agg: count, window_s: 30, op: '<', threshold: 5, min_count: 1}"))
    for t in range(0, 20):
        p.process(inference(t, 10, service="quiet"))
        p.process(inference(t, 10, service="busy"))
    assert p.tick() == []
    fired = []
    for t in range(21, 80):
        p.process(inference(t, 10, service="busy"))
        fired += [a for a in p.tick() if a.labels["service"] == "quiet"]
    assert fired and fired[0].labels["alertname"] == "A"
    # the window (15, 45] holds 16..19: found on the sweep at the 45 s boundary, not later
    assert fired[0].active_at == 45.0


def test_sweep_times_do_not_depend_on_batch_boundaries():
    rule = "{kind: threshold, field: latency_ms, agg: count, window_s: 30, op: '<', threshold: 5, min_count: 1}"

    def run(tick_every: int) -> list[tuple[str, float]]:
        p = Pipeline(one_rule(rule))
        out = []
        for t in range(0, 120):
            if t < 20:
                p.process(inference(t, 10, service="quiet"))
            p.process(inference(t, 10, service="busy"))
            if t % tick_every == 0:
                out += [(a.state.value, a.active_at) for a in p.tick() if a.labels["service"] == "quiet"]
        return out

    assert run(1)[0] == run(7)[0] == ("firing", 45.0)
