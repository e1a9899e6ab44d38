"""What the guards remember: decisions taken, executions per target and fleet, pending approvals.

The ledger is a view of the audit topic, not a store of its own: the runtime rebuilds it
at start by replaying the topic and then applies every new record (its own and other
agents') as it is published. Applying a record twice is harmless (records are
deduplicated by id), so a replay that overlaps what was applied live is fine.

Memory is bounded: decision keys and record ids are kept in insertion order up to
``max_keys`` (the oldest are forgotten first; a re-sent alert arrives within minutes,
not after 100,000 newer decisions), executions only for the last hour, and the recent
records shown by ``watchkeeper actions list`` in a ring of ``max_recent``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .audit import AuditRecord

__all__ = ["BUDGET_WINDOW_S", "Ledger", "PendingRequest"]

BUDGET_WINDOW_S = 3600.0
"""Budgets count executions in this rolling window (one hour)."""


@dataclass
class PendingRequest:
    """A decision waiting for a person: the pending-approval record, and its approval once given."""

    record: AuditRecord
    approved: AuditRecord | None = None

    @property
    def id(self) -> str:
        return self.record.id


class Ledger:
    """Decision keys, cooldown and budget bookkeeping, and approvals, rebuilt from audit records.

    Parameters
    ----------
    max_keys
        Decision keys (and applied record ids) remembered; the oldest go first.
    max_recent
        Records kept for listing.
    """

    def __init__(self, *, max_keys: int = 100_000, max_recent: int = 1000) -> None:
        self.max_keys = max_keys
        self._decided: OrderedDict[str, str] = OrderedDict()
        self._applied: OrderedDict[str, None] = OrderedDict()
        self._last_execution: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._target_executions: dict[str, deque[float]] = {}
        self._fleet_executions: deque[float] = deque()
        self.pending: dict[str, PendingRequest] = {}
        self.recent: deque[AuditRecord] = deque(maxlen=max_recent)

    # --- applying records -------------------------------------------------------------
    def apply(self, record: AuditRecord) -> bool:
        """Take one record into account; False if it was applied before."""
        if record.id in self._applied:
            return False
        _remember(self._applied, record.id, None, self.max_keys)
        self.recent.append(record)
        if record.outcome == "executed":
            # an undo has its own cooldown: the execution it undoes must not hold it back
            name = record.action + ("-undo" if record.undo_of else "")
            _remember(self._last_execution, (name, record.target), record.ts, self.max_keys)
            self._target_executions.setdefault(record.target, deque()).append(record.ts)
            self._fleet_executions.append(record.ts)
        if record.outcome == "pending-approval":
            self.pending[record.id] = PendingRequest(record)
            _remember(self._decided, record.decision_key, record.outcome, self.max_keys)
        elif record.request_id is not None:
            self._settle(record)
        else:
            _remember(self._decided, record.decision_key, record.outcome, self.max_keys)
        return True

    def apply_all(self, records: Iterable[AuditRecord]) -> int:
        return sum(self.apply(r) for r in records)

    def _settle(self, record: AuditRecord) -> None:
        request = self.pending.get(record.request_id or "")
        if record.outcome == "approved":
            if request is not None and request.approved is None:
                request.approved = record
            return
        # executed, failed, noop, skipped (a guard, or a person rejecting), expired: closed
        self.pending.pop(record.request_id or "", None)
        _remember(self._decided, record.decision_key, record.outcome, self.max_keys)

    # --- what the guards ask ------------------------------------------------------------
    def status(self, key: str) -> str | None:
        """The latest outcome recorded for a decision key; None if it was never decided."""
        return self._decided.get(key)

    def last_execution(self, action: str, target: str) -> float | None:
        return self._last_execution.get((action, target))

    def executions(self, target: str, now: float) -> int:
        """Executions on ``target`` (any action) in the budget window ending at ``now``."""
        times = self._target_executions.get(target)
        if times is None:
            return 0
        _prune(times, now)
        if not times:
            del self._target_executions[target]
            return 0
        return _count(times, now)

    def fleet_executions(self, now: float) -> int:
        """Executions on every target in the budget window ending at ``now``."""
        _prune(self._fleet_executions, now)
        # prune the per-target windows too, so idle targets do not hold memory
        for target in [t for t, times in self._target_executions.items() if not _prune(times, now)]:
            del self._target_executions[target]
        return _count(self._fleet_executions, now)

    # --- approvals ------------------------------------------------------------------------
    def find_pending(self, id_or_prefix: str) -> PendingRequest | None:
        """A pending request by id, or by a unique prefix of at least 6 characters."""
        if id_or_prefix in self.pending:
            return self.pending[id_or_prefix]
        if len(id_or_prefix) < 6:
            return None
        found = [p for i, p in self.pending.items() if i.startswith(id_or_prefix)]
        return found[0] if len(found) == 1 else None

    def waiting(self) -> Iterator[PendingRequest]:
        """Pending requests nobody approved yet, oldest first."""
        return (p for p in sorted(self.pending.values(), key=lambda p: p.record.ts) if p.approved is None)

    def approved(self) -> Iterator[PendingRequest]:
        """Approved requests whose execution has not been recorded yet, oldest approval first."""
        ready = [p for p in self.pending.values() if p.approved is not None]
        return iter(sorted(ready, key=lambda p: p.approved.ts if p.approved else 0.0))


def _remember(table: OrderedDict, key: object, value: object, limit: int) -> None:  # type: ignore[type-arg]
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


def _count(times: deque[float], now: float) -> int:
    # records of several partitions arrive slightly out of order: count by value, not position
    return sum(1 for t in times if now - BUDGET_WINDOW_S < t <= now)


def _prune(times: deque[float], now: float) -> int:
    """Drop times older than the budget window; returns how many are left."""
    while times and times[0] <= now - BUDGET_WINDOW_S:
        times.popleft()
    return len(times)
