"""Cardinality (issue 12, item 7): invented series cannot evict learned ones, no alert outlives its state.

Every test runs the real ``Pipeline``; the flood test runs the shipped rules.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.config import SeriesLimits
from agent.model import AlertState
from agent.rules import load_rules
from agent.runtime.partition_state import restore_partition, snapshot_partition
from agent.runtime.pipeline import Pipeline
from tests.unit.agent.rulebook import inference, one_rule, rules_from

RULES = Path(__file__).resolve().parents[3] / "rules"
OVER_100 = "{kind: threshold, field: latency_ms, op: '>', threshold: 100}"
OVER_200 = "{kind: threshold, field: latency_ms, op: '>', threshold: 200}"

TWO_RULES = """
groups:
  - name: g
    rules:
      - {alert: Slow, source: inference, by: [service], detector: {kind: threshold, field: latency_ms, op: '>', threshold: 100}}
      - {alert: VerySlow, source: inference, by: [service, model], detector: {kind: threshold, field: latency_ms, op: '>', threshold: 100000}}
"""


def orphans(p: Pipeline) -> list:
    """Alerts whose series has no state in the engine (the invariant: none, ever)."""
    return [skey for skey in p.lifecycle.active if p.engine.series(skey) is None]


def stray_slots(p: Pipeline) -> list:
    """Shortcuts that feed a state the table does not hold."""
    engine = p.engine
    shapes = engine._shapes.sources.values()  # noqa: SLF001 - the invariant under test
    return [s for _, _, cache in shapes for slots in cache.values() for s in slots if s.state is not None and engine.series(s.skey) is not s.state]


# --- the orphan: a state evicted between a verdict and the lifecycle's record ---------------
def test_a_verdict_of_an_event_keeps_its_state_while_the_same_event_makes_a_series():
    # a late event of a new service: its fresh state is the idlest in the table, and the
    # same event's second rule needs a place; the verdict "Slow" is not yet an alert
    p = Pipeline(rules_from(TWO_RULES), max_series=2)
    p.process(inference(100, 10, service="x"))
    fired = p.process(inference(50, 500, service="y"))
    assert [a.state for a in fired] == [AlertState.FIRING]
    assert orphans(p) == [] and stray_slots(p) == []


def test_a_new_series_never_feeds_a_state_outside_the_table():
    p = Pipeline(one_rule(OVER_100), max_series=1)
    p.process(inference(100, 10, service="x"))
    p.process(inference(50, 500, service="y"))
    assert orphans(p) == [] and stray_slots(p) == []
    # and the alert ends: its series' state says so
    assert [a.state for a in p.process(inference(51, 10, service="y"))] == [AlertState.RESOLVED]
    assert p.lifecycle.active == {}


def test_an_alert_whose_state_is_gone_resolves_instead_of_firing_forever():
    p = Pipeline(one_rule(OVER_100, keep="1m"))
    p.process(inference(0, 500, service="x"))
    p.engine.drop_where(None)  # whatever took it: the backstop must not re-send it forever
    assert p.tick(30) == []  # its condition counts as cleared from here: keep_firing_for applies
    assert p.tick(89) == []
    assert [a.state for a in p.tick(90)] == [AlertState.RESOLVED]
    assert p.firing() == [] and p.orphans_resolved >= 1


def test_reload_of_a_changed_rule_keeps_a_state_for_its_alert_and_resolves_it_when_silent():
    p = Pipeline(one_rule(OVER_100), staleness_s=300)
    p.process(inference(0, 500, service="x"))
    p.reload(one_rule(OVER_200))  # what the rule learns changed: a fresh detector
    assert orphans(p) == []
    assert p.tick(100) == []
    assert [a.state for a in p.tick(400)] == [AlertState.RESOLVED]
    assert p.lifecycle.active == {}


def test_reload_of_a_changed_rule_judges_its_alert_with_the_new_detector():
    p = Pipeline(one_rule(OVER_100))
    p.process(inference(0, 500, service="x"))
    p.reload(one_rule(OVER_200))
    assert [a.state for a in p.process(inference(1, 150, service="x"))] == [AlertState.RESOLVED]


def test_restored_alert_of_a_changed_rule_gets_a_state_and_resolves():
    old = Pipeline(one_rule(OVER_100), staleness_s=300)
    old.process(inference(0, 500, service="x"), ("t", 0))
    payload = snapshot_partition(old, ("t", 0), 1)
    new = Pipeline(one_rule(OVER_200), staleness_s=300)
    restore_partition(new, ("t", 0), payload)
    assert len(new.lifecycle.active) == 1 and orphans(new) == []
    assert [a.state for a in new.tick(400)] == [AlertState.RESOLVED]


def test_attaching_a_partition_never_evicts_its_own_alerted_series():
    # the partition brings more series than the table's share holds: the adopted series
    # with an alert must not be pushed out by the ones adopted after it
    src = Pipeline(one_rule(OVER_100), max_series=10)
    src.process(inference(0, 500, service="a"), ("t", 0))
    for i in range(5):
        src.process(inference(1 + i, 10, service=f"q{i}"), ("t", 0))
    part = src.detach_partition(("t", 0))
    dst = Pipeline(src.rules, max_series=2)
    assert dst.attach_partition(part)
    assert orphans(dst) == [] and len(dst.lifecycle.active) == 1


# --- admission: a flood of invented names against a learned baseline --------------------
def _shipped() -> Pipeline:
    return Pipeline(load_rules([str(RULES)]), max_series=300)


def test_a_flood_of_invented_services_leaves_learned_series_intact_and_paging():
    p = _shipped()
    for t in range(600):  # ten minutes of a healthy service: proven baselines
        p.process(inference(float(t), 50.0 + t % 7, service="pay", model="m1"))
    learned = {skey: state for skey, state in p.engine.items() if skey[1][:1] == ("pay",)}
    assert learned
    for i in range(3000):  # 10x max_series names, one event each
        p.process(inference(600.0 + i * 0.01, 50.0, service=f"bogus-{i}", model="m1"))
    assert len(p.engine) <= 300
    for skey, state in learned.items():
        assert p.engine.series(skey) is state, skey
    fired = []
    for t in range(630, 700):  # a real fault: p99 far above 500 ms
        fired += p.process(inference(float(t), 900.0, service="pay", model="m1"))
        fired += p.tick(float(t))
    assert "InferenceHighP99Latency" in {a.name for a in fired if a.state is AlertState.FIRING}
    assert orphans(p) == []


def test_a_source_full_of_proven_series_refuses_new_ones_and_counts_them():
    p = Pipeline(one_rule("{kind: threshold, field: latency_ms, agg: mean, window_s: 10, op: '>', threshold: 100}"), max_series=3,
                 limits=SeriesLimits(proven_s=10))
    for t in range(20):
        for svc in ("a", "b", "c"):
            p.process(inference(float(t), 10, service=svc))
    states = {skey: st for skey, st in p.engine.items()}
    for i in range(500):
        p.process(inference(20.0, 10, service=f"n{i}"))
    assert {skey: st for skey, st in p.engine.items()} == states
    refused = p.engine.drain_refused()
    assert refused["inference"][0] == 500 and refused["inference"][1][0] == "g/A"
    assert p.engine.drain_refused() == {}


def test_a_refused_series_is_not_searched_for_again_on_every_event():
    p = Pipeline(one_rule(OVER_100), max_series=2000, limits=SeriesLimits(proven_s=1))
    for t in (0, 2):
        for i in range(2000):
            p.process(inference(float(t), 10, service=f"s{i}"))
    calls = 0
    search = p.engine.admission._unproven  # noqa: SLF001 - the cost under test

    def counted(*args):
        nonlocal calls
        calls += 1
        return search(*args)

    p.engine.admission._unproven = counted  # noqa: SLF001
    for i in range(1000):
        p.process(inference(3.0, 10, service=f"new{i}"))
    assert calls <= 1000 / (2000 // 100) + 1
    assert p.engine.drain_refused()["inference"][0] == 1000


def test_a_long_silent_proven_series_gives_its_place():
    p = Pipeline(one_rule(OVER_100), max_series=2, limits=SeriesLimits(proven_s=10, retain_s=3600))
    for t in range(0, 20):
        p.process(inference(float(t), 10, service="old"))
    for t in range(4000, 4020):
        p.process(inference(float(t), 10, service="live"))
    assert p.engine.series(("g/A", ("live",))) is not None
    p.process(inference(4021.0, 10, service="newcomer"))  # "old" has been silent for > 1 h
    assert p.engine.series(("g/A", ("newcomer",))) is not None
    assert p.engine.series(("g/A", ("old",))) is None
    assert p.engine.series(("g/A", ("live",))) is not None


def test_a_flood_on_one_source_does_not_touch_another_sources_share():
    text = """
groups:
  - name: g
    rules:
      - {alert: Slow, source: inference, by: [service], detector: {kind: threshold, field: latency_ms, op: '>', threshold: 100}}
      - {alert: Tokens, source: llm, by: [service], detector: {kind: threshold, field: total_tokens, op: '>', threshold: 100000}}
"""
    from agent.model import EVENT_ADAPTER

    def llm(ts: float, service: str):
        return EVENT_ADAPTER.validate_python({"type": "llm", "ts": ts, "service": service, "model": "m", "prompt_version": "p",
                                              "tenant": "t", "prompt_tokens": 3, "completion_tokens": 4, "latency_ms": 1, "status": "ok"})

    p = Pipeline(rules_from(text), max_series=20)
    for i in range(5):
        p.process(llm(0.0, f"chat{i}"))  # young, unproven: the budget is what protects them
    for i in range(1000):
        p.process(inference(1.0, 10, service=f"bogus{i}"))
    assert all(p.engine.series(("g/Tokens", (f"chat{i}",))) is not None for i in range(5))
    assert p.engine.admission.count["inference"] <= 10


# --- the alert table is bounded ------------------------------------------------------------
def test_at_max_active_alerts_new_alerts_are_refused_and_firing_ones_go_on():
    p = Pipeline(one_rule(OVER_100), limits=SeriesLimits(max_active_alerts=3))
    fired = []
    for i in range(5):
        fired += p.process(inference(0, 500, service=f"s{i}"))
    assert len(fired) == 3 and len(p.lifecycle.active) == 3 and p.lifecycle.refused == 2
    assert len(p.firing()) == 3
    # one resolves: a place for the next
    assert [a.state for a in p.process(inference(1, 10, service="s0"))] == [AlertState.RESOLVED]
    assert [a.state for a in p.process(inference(2, 500, service="s4"))] == [AlertState.FIRING]


def test_series_limits_are_validated():
    from agent.config import parse_shares
    from agent.errors import ConfigError

    with pytest.raises(ConfigError):
        SeriesLimits(max_active_alerts=0)
    with pytest.raises(ConfigError):
        SeriesLimits(shares={"inference": 0.9, "llm": 0.2})
    assert parse_shares("inference=0.5, llm=0.25") == {"inference": 0.5, "llm": 0.25}
    assert parse_shares("") == {}
    with pytest.raises(ConfigError):
        parse_shares("inference")
    assert math.isclose(sum(parse_shares("a=0.5,b=0.5").values()), 1.0)


def test_an_unproven_series_stays_unproven_after_a_checkpoint_restore():
    p = Pipeline(one_rule(OVER_100), limits=SeriesLimits(proven_s=60))
    p.process(inference(0, 10, service="young"), ("t", 0))
    for t in range(0, 100, 10):
        p.process(inference(float(t), 10, service="old"), ("t", 0))
    q = Pipeline(one_rule(OVER_100), limits=SeriesLimits(proven_s=60))
    restore_partition(q, ("t", 0), snapshot_partition(p, ("t", 0), 1))
    admission = q.engine.admission
    assert not admission.proven(q.engine.series(("g/A", ("young",))))
    assert admission.proven(q.engine.series(("g/A", ("old",))))


def test_the_agent_takes_the_limits_and_exports_the_refusals(tmp_path: Path):
    from agent.config import AgentConfig, KafkaConfig
    from agent.runtime.app import AgentApp
    from agent.runtime.notifier import TerminalSink

    rules = tmp_path / "r.yaml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: Slow\n    source: inference\n    by: [service]\n"
        "    detector: {kind: threshold, field: latency_ms, op: '>', threshold: 100}\n"
    )
    limits = SeriesLimits(max_active_alerts=1, proven_s=10)
    config = AgentConfig(kafka=KafkaConfig("localhost:9092"), rules=(str(rules),), http_addr="127.0.0.1:0", max_series=2, series_limits=limits)
    app = AgentApp(config, TerminalSink(), serve_http=False)
    p = app.pipeline
    for t in range(0, 30, 5):
        p.process(inference(float(t), 500, service="a"))
        p.process(inference(float(t), 500, service="b"))
    for i in range(7):
        p.process(inference(30.0, 10, service=f"new{i}"))
    app._after_transitions([])  # noqa: SLF001 - the per-batch bookkeeping under test
    registry = app.metrics.registry
    assert registry.get_sample_value("watchkeeper_series_refused_total", {"source": "inference"}) == 7
    assert registry.get_sample_value("watchkeeper_alerts_refused_total") >= 1  # "b" found the one alert place taken
    assert len(p.lifecycle.active) == 1
    app._after_transitions([])  # noqa: SLF001 - drained: counted once
    assert registry.get_sample_value("watchkeeper_series_refused_total", {"source": "inference"}) == 7
