"""The pipeline stamps alert snapshots with event time (``at``) and the series' newest event (``last_event_at``).

Verification after act (actions/verify.py) has no other clock on the remediation side:
these stamps are what its verdicts are judged on, in the runtime and in replays alike.
"""

from __future__ import annotations

from actions.audit import AuditRecord
from actions.verify import Verifier, Watch, verify_fields
from agent.model import Alert, AlertState
from agent.runtime.pipeline import Pipeline
from tests.unit.agent.rulebook import inference, one_rule

RULE = "{kind: threshold, field: latency_ms, op: '>', threshold: 100}"


def _watch(alert: Alert, start: float, within: float) -> Watch:
    record = AuditRecord(
        decision_key="k", rule_id=alert.rule_id, alertname=alert.name, fingerprint=alert.fingerprint,
        alert_active_at=alert.active_at, action="scale", action_index=0, target="deployment/ns/svc", mode="enforce",
        outcome="executed", ts=start, verify=verify_fields(start, within, undo=True, escalate=True),
    )
    watch = Watch.of(record)
    assert watch is not None
    return watch


def test_transitions_and_resends_carry_event_time_and_the_series_newest_event() -> None:
    p = Pipeline(one_rule(RULE, keep="30s"))
    fired = p.process(inference(100, 500))
    assert [a.state for a in fired] == [AlertState.FIRING]
    assert (fired[0].at, fired[0].last_event_at) == (100, 100)
    p.process(inference(160, 500))
    p.process(inference(170, 500, service="other"))  # the clock moves with any series
    resent = p.firing()
    by_service = {a.labels["service"]: a for a in resent}
    assert (by_service["svc"].at, by_service["svc"].last_event_at) == (170, 160)
    assert Alert.from_dict(by_service["svc"].to_dict()) == by_service["svc"]


def test_a_real_recovery_is_recovered_and_a_silent_series_is_inconclusive() -> None:
    # recovered: events keep coming and clear the condition inside the window
    p = Pipeline(one_rule(RULE, keep="30s"), staleness_s=300.0)
    fired = p.process(inference(100, 500))[0]
    verifier = Verifier(quiet_s=p.staleness_s)
    verifier.watch(_watch(fired, 100, 300))
    for ts in range(110, 200, 10):
        for alert in p.process(inference(ts, 10)):
            verdicts = verifier.observe(alert)
    assert [v.outcome for v in verdicts] == ["recovered"]

    # silent: one bad event after the action, then nothing; staleness resolves the alert
    p = Pipeline(one_rule(RULE, keep="30s"), staleness_s=300.0)
    fired = p.process(inference(100, 500))[0]
    verifier = Verifier(quiet_s=p.staleness_s)
    verifier.watch(_watch(fired, 100, 900))
    p.process(inference(120, 500))
    outcomes = []
    for now in range(130, 1000, 10):
        for alert in p.tick(float(now)):
            outcomes += [v.outcome for v in verifier.observe(alert)]
    assert outcomes == ["inconclusive"]
