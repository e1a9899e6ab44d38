"""The ledger rebuilt from audit records: decisions, executions, approvals, bounded memory."""

from __future__ import annotations

from actions.audit import AuditRecord, answer_request
from actions.ledger import Ledger


def rec(key: str, outcome: str, ts: float, target: str = "deployment/ns/api", action: str = "scale", **more: object) -> AuditRecord:
    return AuditRecord(
        decision_key=key, rule_id="g/A", alertname="A", fingerprint="f", alert_active_at=0.0, action=action,
        action_index=0, target=target, mode="enforce" if outcome != "pending-approval" else "approve",
        outcome=outcome, ts=ts, **more,  # type: ignore[arg-type]
    )


def test_rebuilding_from_records_gives_decisions_and_executions() -> None:
    ledger = Ledger()
    records = [rec("k1", "executed", 100.0), rec("k2", "dry-run", 200.0), rec("k3", "executed", 300.0, target="model/fraud")]
    assert ledger.apply_all(records) == 3
    assert ledger.apply_all(records) == 0  # a replay that overlaps is harmless
    assert (ledger.status("k1"), ledger.status("k2"), ledger.status("nope")) == ("executed", "dry-run", None)
    assert ledger.last_execution("scale", "deployment/ns/api") == 100.0
    assert ledger.executions("deployment/ns/api", now=1000.0) == 1
    assert ledger.fleet_executions(now=1000.0) == 2
    assert ledger.fleet_executions(now=3900.5) == 0  # out of the hour


def test_executions_arriving_out_of_order_count_by_time() -> None:
    ledger = Ledger()
    ledger.apply_all([rec("a", "executed", 5000.0), rec("b", "executed", 1000.0), rec("c", "executed", 4000.0)])
    assert ledger.executions("deployment/ns/api", now=5000.0) == 2  # 1000 is more than an hour before


def test_approval_lifecycle() -> None:
    ledger = Ledger()
    request = rec("k", "pending-approval", 100.0)
    ledger.apply(request)
    assert [p.id for p in ledger.waiting()] == [request.id] and not list(ledger.approved())
    assert ledger.find_pending(request.id[:8]) is ledger.pending[request.id]
    assert ledger.find_pending(request.id[:3]) is None  # too short to be safe
    ledger.apply(answer_request(request, by="alice", approve=True, ts=110.0))
    assert not list(ledger.waiting()) and [p.id for p in ledger.approved()] == [request.id]
    assert ledger.status("k") == "pending-approval"
    ledger.apply(rec("k", "executed", 120.0, request_id=request.id))
    assert ledger.pending == {} and ledger.status("k") == "executed"


def test_a_rejected_or_expired_request_is_closed() -> None:
    ledger = Ledger()
    a, b = rec("ka", "pending-approval", 100.0), rec("kb", "pending-approval", 100.0)
    ledger.apply_all([a, b, answer_request(a, by="bob", approve=False, ts=101.0), answer_request(b, by="x", approve=False, ts=102.0, outcome="expired")])
    assert ledger.pending == {}
    assert (ledger.status("ka"), ledger.status("kb")) == ("skipped", "expired")


def test_memory_is_bounded() -> None:
    ledger = Ledger(max_keys=100, max_recent=10)
    for i in range(1000):
        ledger.apply(rec(f"k{i}", "dry-run", float(i), target=f"deployment/ns/s{i}"))
        ledger.apply(rec(f"e{i}", "executed", float(i), target=f"deployment/ns/s{i}"))
    assert len(ledger._decided) == 100 and len(ledger._applied) == 100 and len(ledger.recent) == 10
    assert len(ledger._last_execution) == 100
    assert ledger.status("k999") == "dry-run" and ledger.status("k0") is None
    ledger.fleet_executions(now=10_000.0)
    assert len(ledger._target_executions) <= 1000 and all(len(v) for v in ledger._target_executions.values())
    ledger.fleet_executions(now=1e6)
    assert ledger._target_executions == {}
