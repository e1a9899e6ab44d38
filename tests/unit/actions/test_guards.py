"""Every guard of ``actions/guards.py`` shown letting a decision through and refusing it."""

from __future__ import annotations

import pytest

from actions.audit import AuditRecord, answer_request
from actions.base import ActionParams, Plan, Target
from actions.base import TransientActionError
from actions.guards import GuardPipeline, effective_mode, take_lease
from actions.ledger import Ledger
from actions.local_lock import LocalLock

NOW = 1_800_000_000.0
TARGET = Target("deployment", "ranker", "serving")


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def params(**more: object) -> ActionParams:
    return ActionParams.model_validate({"type": "fake", "mode": "enforce", **more})


def plan(target: Target = TARGET, **more: object) -> Plan:
    return Plan(target, {"replicas": 2}, {"replicas": 3}, **more)  # type: ignore[arg-type]


def executed(target: str, ts: float, key: str = "k-old", action: str = "fake") -> AuditRecord:
    return AuditRecord(
        decision_key=key, rule_id="g/A", alertname="A", fingerprint="f", alert_active_at=ts - 60, action=action,
        action_index=0, target=target, mode="enforce", outcome="executed", ts=ts,
    )


def pipeline(ledger: Ledger | None = None, **more: object) -> GuardPipeline:
    options: dict[str, object] = {"ceiling": "enforce", "clock": Clock()}
    options.update(more)
    return GuardPipeline(ledger or Ledger(), **options)  # type: ignore[arg-type]


def names(decision) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    return {g.name: g.ok for g in decision.guards}


def test_everything_allowed_acts_and_lists_every_guard() -> None:
    decision = pipeline().decide(key="k1", action="fake", params=params(), plan=plan())
    assert decision.verdict == "act" and decision.guard is None
    assert list(names(decision)) == [
        "mode", "idempotency", "cooldown", "budget-target", "budget-fleet", "namespace", "approval",
    ]
    assert all(names(decision).values())


@pytest.mark.parametrize(
    ("rule", "ceiling", "mode"),
    [
        (None, "enforce", "dry-run"),  # a new rule is dry-run until it says otherwise
        ("enforce", "dry-run", "dry-run"),  # the agent's ceiling wins
        ("enforce", "approve", "approve"),
        ("approve", "enforce", "approve"),
        ("enforce", "enforce", "enforce"),
    ],
)
def test_mode_is_the_rule_mode_capped_by_the_ceiling(rule: str | None, ceiling: str, mode: str) -> None:
    assert effective_mode(rule, ceiling) == mode


def test_mode_ceiling_turns_enforce_into_dry_run() -> None:
    decision = pipeline(ceiling="dry-run").decide(key="k1", action="fake", params=params(), plan=plan())
    assert decision.verdict == "dry-run" and decision.mode == "dry-run"
    assert "ceiling is dry-run" in decision.guards[0].detail


def test_idempotency_refuses_a_decided_key() -> None:
    ledger = Ledger()
    ledger.apply(executed(TARGET.key, NOW - 10, key="k1"))
    decision = pipeline(ledger).decide(key="k1", action="fake", params=params(), plan=plan())
    assert (decision.verdict, decision.guard) == ("duplicate", "idempotency")


def test_noop_plan_is_recorded_as_noop_not_acted() -> None:
    decision = pipeline().decide(key="k1", action="fake", params=params(), plan=plan(noop=True, reason="marked"))
    assert (decision.verdict, decision.reason) == ("noop", "marked")


def test_cooldown_blocks_until_it_has_passed() -> None:
    ledger = Ledger()
    ledger.apply(executed(TARGET.key, NOW - 100))
    clock = Clock()
    guards = pipeline(ledger, clock=clock)
    decision = guards.decide(key="k1", action="fake", params=params(cooldown="5m"), plan=plan())
    assert (decision.verdict, decision.guard) == ("skipped", "cooldown")
    assert "100s ago; cooldown 300s" in decision.reason
    # another action kind on the same target has its own cooldown
    other = guards.decide(key="k1", action="other", params=params(cooldown="5m"), plan=plan())
    assert other.verdict == "act"
    clock.now += 201
    assert guards.decide(key="k1", action="fake", params=params(cooldown="5m"), plan=plan()).verdict == "act"


def test_budget_per_target_counts_the_last_hour() -> None:
    ledger = Ledger()
    for i, age in enumerate((3000, 2000, 1000)):
        ledger.apply(executed(TARGET.key, NOW - age, key=f"k{i}", action=f"kind{i}"))
    clock = Clock()
    guards = pipeline(ledger, clock=clock)
    decision = guards.decide(key="new", action="fake", params=params(cooldown=0, max_per_hour=3), plan=plan())
    assert (decision.verdict, decision.guard) == ("skipped", "budget-target")
    assert decision.reason.startswith("3 of 3 actions on deployment/serving/ranker")
    clock.now += 601  # the oldest leaves the window
    assert guards.decide(key="new", action="fake", params=params(cooldown=0, max_per_hour=3), plan=plan()).verdict == "act"


def test_budget_fleet_counts_every_target() -> None:
    ledger = Ledger()
    for i in range(2):
        ledger.apply(executed(f"deployment/serving/other{i}", NOW - 60, key=f"k{i}"))
    decision = pipeline(ledger, fleet_max_per_hour=2).decide(key="new", action="fake", params=params(), plan=plan())
    assert (decision.verdict, decision.guard) == ("skipped", "budget-fleet")
    assert pipeline(ledger, fleet_max_per_hour=3).decide(key="new", action="fake", params=params(), plan=plan()).verdict == "act"


def test_namespace_allow_list() -> None:
    guards = pipeline(namespaces={"staging"})
    decision = guards.decide(key="k", action="fake", params=params(), plan=plan())
    assert (decision.verdict, decision.guard) == ("skipped", "namespace")
    assert "serving is not in the allow-list (staging)" in decision.reason
    unnamespaced = plan(Target("model", "fraud"))
    assert guards.decide(key="k", action="fake", params=params(), plan=unnamespaced).verdict == "act"


@pytest.mark.parametrize("blocked", ["blast-radius", "rollout-in-progress", "no-previous-version"])
def test_a_plan_blocked_by_the_kind_names_its_guard(blocked: str) -> None:
    decision = pipeline().decide(key="k", action="fake", params=params(), plan=plan(blocked=blocked, reason="why"))
    assert (decision.verdict, decision.guard, decision.reason) == ("skipped", blocked, "why")


def test_a_refusal_in_dry_run_is_still_reported() -> None:
    decision = pipeline(ceiling="dry-run").decide(key="k", action="fake", params=params(), plan=plan(blocked="blast-radius"))
    assert (decision.verdict, decision.guard, decision.mode) == ("skipped", "blast-radius", "dry-run")


def test_approval_waits_then_acts_once_approved() -> None:
    ledger = Ledger()
    guards = pipeline(ledger)
    waiting = guards.decide(key="k", action="fake", params=params(mode="approve"), plan=plan())
    assert (waiting.verdict, waiting.guard) == ("pending-approval", "approval")
    request = AuditRecord(
        decision_key="k", rule_id="g/A", alertname="A", fingerprint="f", alert_active_at=NOW - 60, action="fake",
        action_index=0, target=TARGET.key, mode="approve", outcome="pending-approval", ts=NOW,
    )
    ledger.apply(request)
    assert guards.decide(key="k", action="fake", params=params(mode="approve"), plan=plan()).verdict == "duplicate"
    ledger.apply(answer_request(request, by="alice", approve=True, ts=NOW + 5))
    approved = guards.decide(key="k", action="fake", params=params(mode="approve"), plan=plan(), approved_by="alice")
    assert approved.verdict == "act"
    assert names(approved)["approval"] and "approved by alice" in approved.guards[-1].detail


def test_other_refusals_come_before_waiting_for_approval() -> None:
    decision = pipeline(namespaces=set()).decide(key="k", action="fake", params=params(mode="approve"), plan=plan())
    assert (decision.verdict, decision.guard) == ("skipped", "namespace")


async def test_lease_refuses_while_another_agent_holds_the_target() -> None:
    lock = LocalLock()
    assert (await take_lease(lock, TARGET.key, "agent-a", 30)).ok
    refused = await take_lease(lock, TARGET.key, "agent-b", 30)
    assert (refused.name, refused.ok) == ("lease", False)
    await lock.release(TARGET.key, "agent-a")
    assert (await take_lease(lock, TARGET.key, "agent-b", 30)).ok


async def test_a_failing_lock_raises_a_transient_error_rather_than_acting_blind() -> None:
    class Broken:
        async def acquire(self, key: str, holder: str, ttl_s: float) -> bool:
            raise ConnectionError("API server unreachable")

        async def release(self, key: str, holder: str) -> None:
            pass

    with pytest.raises(TransientActionError, match="API server unreachable"):
        await take_lease(Broken(), TARGET.key, "agent-a", 30)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        GuardPipeline(Ledger(), ceiling="yolo")
    with pytest.raises(ValueError, match="fleet_max_per_hour"):
        GuardPipeline(Ledger(), fleet_max_per_hour=-1)
