"""The audit record: one JSON object per remediation decision, on the audit topic and in the log.

The audit topic is the durable ledger of remediation. Every decision (executed, dry-run,
noop, skipped by a named guard, waiting for approval, approved, expired, failed) is one
record in exactly this shape, which other readers (``watchkeeper actions list``, the
chaos harness, a SIEM) rely on::

    {"id": "<uuid4 hex>", "decision_key": "<sha256 hex>", "ts": <wall epoch s>,
     "rule_id": "...", "alertname": "...", "fingerprint": "...", "alert_active_at": <event epoch s>,
     "labels": {...}, "action": "<type>", "action_index": <int>, "target": "<target.key>",
     "mode": "dry-run|enforce|approve", "outcome": "...", "guard": "<name>" | null,
     "guards": [{"name": "cooldown", "ok": true, "detail": "..."}, ...],
     "before": {...}, "after": {...}, "reason": "<words>", "attempts": <int>,
     "agent": "<agent id>", "request_id": "<pending-approval record id>" | null}

Three keys follow only where they apply (``actions/verify.py``, docs/remediation-verify.md):
``"verify": {"within": s, "from": <event s>, "until": <event s>, "undo": bool, "escalate": bool}``
on an executed (or dry-run) decision that will be verified; ``"verify_of": "<record id>"`` on a
verification (outcome ``recovered``, ``not_recovered`` or ``inconclusive``); ``"undo_of":
"<record id>"`` on every decision about undoing an executed action.

A record is keyed by its target key on the topic, so one target's history stays ordered.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, get_args

from .base import Mode, Outcome

__all__ = ["AuditRecord", "GuardResult", "answer_request", "decision_key", "new_record_id"]

_MODES = frozenset(get_args(Mode))
_OUTCOMES = frozenset(get_args(Outcome))


def decision_key(rule_id: str, fingerprint: str, active_at: float, action_index: int, target_key: str) -> str:
    """The idempotency key of one decision: one alert incident, one action entry, one target.

    A re-sent alert has the same fingerprint and ``active_at``, so the same key; a new
    incident of the same series (after it resolved) starts at a new ``active_at``.
    ``repr`` of the float survives a JSON round trip exactly, so a key recomputed from an
    alert read back from Kafka is the same key.
    """
    text = "|".join((rule_id, fingerprint, repr(float(active_at)), str(int(action_index)), target_key))
    return hashlib.sha256(text.encode()).hexdigest()


def new_record_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class GuardResult:
    """What one guard said: ``ok`` lets the decision go on; ``detail`` says why, in words."""

    name: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class AuditRecord:
    """One decision about one action entry of one firing alert (see the module docstring)."""

    decision_key: str
    rule_id: str
    alertname: str
    fingerprint: str
    alert_active_at: float
    action: str
    action_index: int
    target: str
    mode: str
    outcome: str
    ts: float
    labels: Mapping[str, str] = field(default_factory=dict)
    guard: str | None = None
    guards: tuple[GuardResult, ...] = ()
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    attempts: int = 0
    agent: str = ""
    request_id: str | None = None
    id: str = field(default_factory=new_record_id)
    verify: Mapping[str, Any] | None = None
    verify_of: str | None = None
    undo_of: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"audit record mode {self.mode!r} is not one of {sorted(_MODES)}")
        if self.outcome not in _OUTCOMES:
            raise ValueError(f"audit record outcome {self.outcome!r} is not one of {sorted(_OUTCOMES)}")

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape, keys in the documented order."""
        return {
            "id": self.id,
            "decision_key": self.decision_key,
            "ts": self.ts,
            "rule_id": self.rule_id,
            "alertname": self.alertname,
            "fingerprint": self.fingerprint,
            "alert_active_at": self.alert_active_at,
            "labels": dict(self.labels),
            "action": self.action,
            "action_index": self.action_index,
            "target": self.target,
            "mode": self.mode,
            "outcome": self.outcome,
            "guard": self.guard,
            "guards": [g.to_dict() for g in self.guards],
            "before": _jsonable(self.before),
            "after": _jsonable(self.after),
            "reason": self.reason,
            "attempts": self.attempts,
            "agent": self.agent,
            "request_id": self.request_id,
            **({"verify": _jsonable(self.verify)} if self.verify is not None else {}),
            **({"verify_of": self.verify_of} if self.verify_of is not None else {}),
            **({"undo_of": self.undo_of} if self.undo_of is not None else {}),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """A record from its JSON form; ``ValueError`` (or ``KeyError``/``TypeError``) when it is not one."""
        guards = tuple(
            GuardResult(str(g["name"]), bool(g["ok"]), str(g.get("detail") or "")) for g in data.get("guards") or ()
        )
        request_id = data.get("request_id")
        guard = data.get("guard")
        verify = data.get("verify")
        if verify is not None and not isinstance(verify, Mapping):
            raise ValueError("an audit record's verify is an object")
        verify_of, undo_of = data.get("verify_of"), data.get("undo_of")
        return cls(
            id=str(data["id"]),
            decision_key=str(data["decision_key"]),
            ts=float(data["ts"]),
            rule_id=str(data["rule_id"]),
            alertname=str(data.get("alertname") or ""),
            fingerprint=str(data["fingerprint"]),
            alert_active_at=float(data["alert_active_at"]),
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
            action=str(data["action"]),
            action_index=int(data["action_index"]),
            target=str(data["target"]),
            mode=str(data["mode"]),
            outcome=str(data["outcome"]),
            guard=None if guard is None else str(guard),
            guards=guards,
            before=dict(data.get("before") or {}),
            after=dict(data.get("after") or {}),
            reason=str(data.get("reason") or ""),
            attempts=int(data.get("attempts") or 0),
            agent=str(data.get("agent") or ""),
            request_id=None if request_id is None else str(request_id),
            verify=None if verify is None else dict(verify),
            verify_of=None if verify_of is None else str(verify_of),
            undo_of=None if undo_of is None else str(undo_of),
        )

    @classmethod
    def from_json(cls, value: bytes | str | None) -> AuditRecord:
        data = json.loads(value or b"")
        if not isinstance(data, dict):
            raise ValueError("an audit record is a JSON object")
        return cls.from_dict(data)


def answer_request(
    request: AuditRecord, *, by: str, approve: bool, ts: float, reason: str = "", outcome: str | None = None
) -> AuditRecord:
    """A person's (or the clock's) answer to a pending-approval record.

    Approval: outcome ``approved``. Rejection: outcome ``skipped`` by the ``approval``
    guard. ``outcome="expired"``: nobody answered in time. ``request_id`` names the
    request; the rest of the decision (alert, action, target) is copied from it.
    """
    if outcome is None:
        outcome = "approved" if approve else "skipped"
    verb = {"approved": "approved", "skipped": "rejected", "expired": "expired"}.get(outcome, outcome)
    detail = f"{verb} by {by}" if outcome != "expired" else "not approved in time"
    words = detail + (f": {reason}" if reason else "")
    return replace(
        request,
        id=new_record_id(),
        ts=ts,
        outcome=outcome,
        guard=None if outcome == "approved" else "approval",
        guards=(GuardResult("approval", outcome == "approved", words),),
        after={},
        reason=words,
        attempts=0,
        agent=by,
        request_id=request.id,
    )


def _jsonable(value: Any) -> Any:
    """Before/after states as JSON can carry them: NaN and infinity become null, the rest text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
