"""Alert lifecycle: Prometheus' pending/firing/resolved semantics, in event time."""

from __future__ import annotations

from agent.model import AlertState
from agent.runtime.pipeline import Pipeline
from tests.unit.agent.rulebook import inference, one_rule

OVER_100 = "{kind: threshold, field: latency_ms, op: '>', threshold: 100}"


def run(pipeline, points):
    """Feed (ts, latency) points; return [(ts, state)] of the transitions."""
    out = []
    for ts, lat in points:
        out += [(ts, a.state) for a in pipeline.process(inference(ts, lat))]
    return out


def test_for_zero_fires_on_the_first_bad_event():
    p = Pipeline(one_rule(OVER_100))
    assert run(p, [(0, 10), (1, 500)]) == [(1, AlertState.FIRING)]


def test_pending_until_for_has_elapsed():
    p = Pipeline(one_rule(OVER_100, for_="10s"))
    got = run(p, [(t, 500) for t in range(0, 12)])
    assert got == [(10, AlertState.FIRING)]


def test_pending_that_clears_is_dropped_silently_and_restarts():
    p = Pipeline(one_rule(OVER_100, for_="10s"))
    got = run(p, [(0, 500), (5, 500), (6, 10), (7, 500), (16, 500), (17, 500)])
    assert got == [(17, AlertState.FIRING)]  # the clock restarted at t=7


def test_resolves_on_first_quiet_event_without_keep_firing_for():
    p = Pipeline(one_rule(OVER_100))
    assert run(p, [(0, 500), (1, 500), (2, 10)]) == [(0, AlertState.FIRING), (2, AlertState.RESOLVED)]


def test_keep_firing_for_holds_then_resolves():
    p = Pipeline(one_rule(OVER_100, keep="5s"))
    got = run(p, [(0, 500), (1, 10), (3, 10), (5, 10), (6, 10)])
    assert got == [(0, AlertState.FIRING), (6, AlertState.RESOLVED)]


def test_keep_firing_for_is_reset_when_condition_returns():
    p = Pipeline(one_rule(OVER_100, keep="5s"))
    got = run(p, [(0, 500), (1, 10), (4, 500), (5, 10), (9, 10), (10, 10)])
    assert got == [(0, AlertState.FIRING), (10, AlertState.RESOLVED)]


def test_tick_fires_pending_alert_without_new_events():
    p = Pipeline(one_rule(OVER_100, for_="10s"))
    assert run(p, [(0, 500)]) == []
    assert [a.state for a in p.tick(9)] == []
    assert [a.state for a in p.tick(10)] == [AlertState.FIRING]


def test_stale_series_resolves_after_staleness():
    p = Pipeline(one_rule(OVER_100), staleness_s=60)
    run(p, [(0, 500)])
    assert p.tick(60) == []
    resolved = p.tick(61)
    assert [a.state for a in resolved] == [AlertState.RESOLVED]
    assert resolved[0].resolved_at == 61


def test_fingerprint_is_stable_across_alerts_of_the_same_series():
    p = Pipeline(one_rule(OVER_100))
    first = p.process(inference(0, 500))[0]
    p.process(inference(1, 10))
    again = p.process(inference(2, 500))[0]
    assert first.fingerprint == again.fingerprint
    assert again.active_at == 2


def test_series_are_independent_and_labelled():
    p = Pipeline(one_rule(OVER_100))
    a = p.process(inference(0, 500, service="a"))
    b = p.process(inference(0, 500, service="b"))
    assert a[0].labels == {"service": "a", "severity": "page", "alertname": "A"}
    assert b[0].fingerprint != a[0].fingerprint
    assert a[0].annotations == {"summary": "a at 500"}


def test_firing_lists_current_alerts_for_resend():
    p = Pipeline(one_rule(OVER_100))
    p.process(inference(0, 500, service="a"))
    p.process(inference(0, 500, service="b"))
    p.process(inference(1, 10, service="b"))
    assert [a.labels["service"] for a in p.firing()] == ["a"]


def test_reload_without_the_rule_resolves_its_alerts():
    from agent.rules import RuleSet

    p = Pipeline(one_rule(OVER_100))
    p.process(inference(0, 500))
    resolved = p.reload(RuleSet())
    assert [a.state for a in resolved] == [AlertState.RESOLVED]
    assert p.firing() == []
