"""Firing alerts in, guarded remediations out: one audit record per decision.

The remediator is the third consumer of the alerts topic (group ``<group>.actions``).
For each FIRING transition of a rule with ``actions``, and each entry of them, it

1. builds the action from the entry (validated at rule load) and resolves the target;
2. computes the decision key (one alert incident x one entry x one target) and stops
   silently if the ledger already holds a decision for it (a re-send, a redelivery);
3. plans (reads the target; never writes), runs the guards, takes the target's lease,
   applies with bounded retries and exponential backoff, and releases the lease;
4. publishes the audit record and waits for the broker's acknowledgement, so that the
   alerts topic's offsets are committed only after every decision is durable.

After acting it verifies (:mod:`actions.verify`, docs/remediation-verify.md): the
executed record carries a ``verify`` object, every alert snapshot goes through
:meth:`Remediator.verify`, and the verdict is a record of its own (``verify_of``), a
metric, an annotation on the alert, a page when ``not_recovered`` (``escalate``), and,
with ``undo: true``, an undo of the action: planned by the kind, through the same
guards, lease and ledger, audited with ``undo_of``, and verified in turn (never undone).

Approve mode publishes a ``pending-approval`` record and stops; an ``approved`` record
on the audit topic (``watchkeeper actions approve ID`` or ``POST /actions/ID/approve``)
makes the agent that asked re-plan and execute it (any agent after ``takeover_s``, in
case the one that asked is gone); unanswered requests expire after the action's
``approval_timeout``. Decisions in one agent are serialized: they are rare, and it
keeps the read-guard-write of the ledger atomic.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from actions.audit import AuditRecord, GuardResult, answer_request, decision_key, new_record_id
from actions.base import Action, ActionContext, ActionFailed, NotConfigured, Plan, Target, TargetRefused, TransientActionError
from actions.guards import GuardPipeline, effective_mode, take_lease
from actions.ledger import Ledger, PendingRequest
from actions.verify import Verdict, Verifier, Watch, event_time, verify_fields
from agent.logs import get_logger
from agent.model import Alert, AlertState, fingerprint
from agent.rules import Rule, RuleSet

from .selfmetrics import SelfMetrics

__all__ = ["AuditNotDurable", "Remediator"]

_log = get_logger(__name__)

Publish = Callable[[AuditRecord], Awaitable[None]]
Annotate = Callable[[str, tuple[str, ...], dict[str, str]], None]
Page = Callable[[Alert], Awaitable[None]]

NOT_RECOVERED_ALERT = "WatchkeeperActionNotRecovered"
"""The alertname of the page sent when an action's verification says ``not_recovered``."""


class AuditNotDurable(Exception):
    """The broker did not take an audit record: the alert batch must be redelivered."""


class _Failed(Exception):
    """Retries ran out, or a final error: the decision is recorded as ``failed``."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.attempts = attempts


class Remediator:
    """Decides and runs the remediations of firing alerts; see the module docstring.

    Parameters
    ----------
    rules
        The current rule set (changes with hot reload).
    context
        Clients and settings the actions use; ``context.lock`` guards targets.
    publish
        Puts an audit record on the audit topic and returns once the broker has it.
    metrics
        Where ``watchkeeper_actions_*`` are counted.
    ceiling, fleet_max_per_hour
        The agent's mode ceiling and fleet-wide budget (see ``actions/guards.py``).
    backoff_s, max_backoff_s
        Delay before the first retry of a failed apply, doubling up to the maximum.
    annotate
        Adds annotations to a live alert (the lifecycle's), to report a failed action.
    registry
        Action kinds by name (default: ``actions.registry.ACTIONS``, read at call time).
    page
        Publishes an alert (the ``WatchkeeperActionNotRecovered`` page) to the alerts topic.
    verifier
        The open verifications and their event clock (default: a fresh one).
    """

    def __init__(
        self,
        *,
        rules: Callable[[], RuleSet],
        context: ActionContext,
        publish: Publish,
        metrics: SelfMetrics,
        ceiling: str = "dry-run",
        fleet_max_per_hour: int = 20,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        takeover_s: float = 30.0,
        annotate: Annotate | None = None,
        on_audit: Callable[[AuditRecord], None] | None = None,
        registry: Mapping[str, type[Action]] | None = None,
        clock: Callable[[], float] = time.time,
        ledger: Ledger | None = None,
        page: Page | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self._rules = rules
        self.context = context
        self._publish = publish
        self.metrics = metrics
        self.ledger = ledger or Ledger()
        self.guards = GuardPipeline(
            self.ledger, ceiling=ceiling, fleet_max_per_hour=fleet_max_per_hour, namespaces=context.namespaces, clock=clock
        )
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.takeover_s = takeover_s
        self._annotate = annotate
        self._on_audit = on_audit
        self._registry = registry
        self._clock = clock
        self._lock = asyncio.Lock()
        self._alerts: dict[str, Alert] = {}  # pending request id -> the alert it was asked for
        self._by_id: tuple[RuleSet | None, Mapping[str, Rule]] = (None, {})
        self.wake = asyncio.Event()  # set when an approval arrives, so the sweep runs at once
        self._page = page
        self.verifier = verifier or Verifier()
        self._pushed_out: list[Verdict] = []  # watches given up at the bound, recorded at the next verify

    @property
    def agent_id(self) -> str:
        return self.context.agent_id

    def registry(self) -> Mapping[str, type[Action]]:
        if self._registry is not None:
            return self._registry
        from actions.registry import ACTIONS

        return ACTIONS

    # --- alerts -------------------------------------------------------------------------
    def _rules_by_id(self) -> Mapping[str, Rule]:
        ruleset = self._rules()
        if self._by_id[0] is not ruleset:  # rebuilt only when a reload swapped the rule set
            self._by_id = (ruleset, ruleset.by_id())
        return self._by_id[1]

    def wants(self, alert: Alert) -> bool:
        if alert.state is not AlertState.FIRING:
            return False
        rule = self._rules_by_id().get(alert.rule_id)
        return rule is not None and bool(rule.actions)

    async def handle(self, alerts: Sequence[Alert]) -> None:
        """Decide every action of every firing alert; return once each decision is durable."""
        rules = self._rules_by_id()
        async with self._lock:
            for alert in alerts:
                rule = rules.get(alert.rule_id)
                if alert.state is not AlertState.FIRING or rule is None:
                    continue
                for index, entry in enumerate(rule.actions):
                    try:
                        await self._decide(alert, rule, index, entry)
                    except AuditNotDurable:
                        raise
                    except Exception:  # noqa: BLE001 - a bug in one decision must not stall the others
                        _log.exception("remediation decision failed; skipped", rule=rule.id, action_index=index)

    def observe(self, record: AuditRecord) -> None:
        """A record read back from the audit topic (this agent's or another's)."""
        if self.ledger.apply(record):
            if record.outcome == "approved":
                self.wake.set()
            self.metrics.actions_pending.set(sum(1 for _ in self.ledger.waiting()))
            if record.verify_of is not None:
                self.verifier.settle(record.verify_of)
            elif record.agent == self.agent_id and record.verify:  # each agent verifies what it did
                watch = Watch.of(record)
                if watch is not None:
                    self._pushed_out.extend(self.verifier.watch(watch))

    # --- verification -------------------------------------------------------------------
    @property
    def verifying(self) -> bool:
        """Whether any verification is open (the consumer can skip decoding snapshots otherwise)."""
        return bool(self.verifier.watches or self._pushed_out)

    async def verify(self, alerts: Sequence[Alert]) -> None:
        """Feed alert snapshots (any state) to the open verifications; record every verdict."""
        if not self.verifying:
            return
        rules = self._rules_by_id()
        async with self._lock:
            verdicts, self._pushed_out = self._pushed_out, []
            for alert in alerts:
                verdicts.extend(self.verifier.observe(alert))
            for verdict in verdicts:
                try:
                    await self._verdict(verdict, rules)
                except AuditNotDurable:
                    raise
                except Exception:  # noqa: BLE001 - a bug in one verdict must not stall the others
                    _log.exception("verification failed; skipped", action_record=verdict.watch.record.id)

    async def _verdict(self, verdict: Verdict, rules: Mapping[str, Rule]) -> None:
        done = verdict.watch.record
        key = _derived_key("verify", done.id)
        if self.ledger.status(key) is not None:
            return  # recorded before (a redelivered batch)
        record = AuditRecord(
            decision_key=key, rule_id=done.rule_id, alertname=done.alertname, fingerprint=done.fingerprint,
            alert_active_at=done.alert_active_at, action=done.action, action_index=done.action_index,
            target=done.target, mode=done.mode, outcome=verdict.outcome, ts=self._clock(), labels=dict(done.labels),
            before=done.before, after=done.after, reason=f"{verdict.summary} ({verdict.reason})"[:1000],
            agent=self.agent_id, verify_of=done.id, undo_of=done.undo_of,
        )
        await self.emit(record)
        self.metrics.action_verifications.labels(done.action, verdict.outcome).inc()
        alert = verdict.alert
        if self._annotate is not None and alert is not None and alert.series and verdict.still_firing:
            self._annotate(alert.rule_id, alert.series, {"remediation": verdict.summary[:500]})
        if verdict.outcome != "not_recovered" or done.outcome != "executed":
            return
        if verdict.watch.escalate and self._page is not None:
            await self._page(_page_alert(verdict, record))
        if verdict.watch.undo and verdict.still_firing and alert is not None:
            await self._undo(done, alert, rules)

    async def _undo(self, done: AuditRecord, alert: Alert, rules: Mapping[str, Rule]) -> None:
        """Undo an executed action that did not help: same guards, lease, ledger and audit; then verified."""
        rule = rules.get(done.rule_id)
        entry = rule.actions[done.action_index] if rule is not None and done.action_index < len(rule.actions) else None
        kind = self.registry().get(done.action)
        key = _derived_key("undo", done.id)
        if self.ledger.status(key) is not None:
            self.metrics.action_duplicates.inc()
            return
        if rule is None or entry is None or kind is None or entry.get("type") != done.action:
            _log.warning("not undoing: the rule or its action changed since", rule=done.rule_id, audit_id=done.id)
            return
        params = kind.Params.model_validate(dict(entry))
        atype, index, mode = done.action, done.action_index, effective_mode(params.mode, self.guards.ceiling)
        fields: dict[str, Any] = {"undo_of": done.id}
        started = time.monotonic()
        try:
            action = kind(params, self.context)
            target = action.target(alert)
            if target.key != done.target:
                raise ActionFailed(f"the alert now resolves to {target.key}, not {done.target}")
        except Exception as exc:  # noqa: BLE001 - TargetRefused, ActionFailed or a bug: audited, never raised
            if isinstance(exc, TargetRefused):
                await self._refused(alert, atype, index, key, done.target, mode, exc, fields)
            else:
                await self._failed(alert, atype, index, key, done.target, mode, f"undo: no target: {exc}", 0, fields)
            return
        action.decision_key = key
        try:
            plan, _ = await self._with_retries(lambda: action.plan_undo(done.before, done.after, alert, target), params.retries)
        except _Failed as exc:
            if isinstance(exc.__cause__, TargetRefused):
                await self._refused(alert, atype, index, key, target.key, mode, exc.__cause__, fields)
            else:
                await self._failed(alert, atype, index, key, target.key, mode, f"undo: {exc}", exc.attempts, fields)
            return
        # an undo has its own cooldown (``<kind>-undo``): the execution it undoes does not hold it back
        decision = self.guards.decide(key=key, action=f"{atype}-undo", params=params, plan=plan)
        fields.update(guards=decision.guards, before=plan.before, after=plan.after)
        if decision.verdict == "duplicate":
            self.metrics.action_duplicates.inc()
            return
        if decision.verdict == "pending-approval":  # an undo is automatic or not at all
            guards = (*decision.guards, GuardResult("approval", False, "undo runs only in enforce mode"))
            fields["guards"] = guards
            await self._record(
                alert, atype, index, key, target.key, mode, "skipped", guard="approval",
                reason="undo not run: the rule is in approve mode; undo by hand if wanted", **fields,
            )
            return
        if decision.verdict != "act":
            await self._record(
                alert, atype, index, key, target.key, decision.mode, decision.verdict, guard=decision.guard,
                reason=f"undo: {decision.reason}", attempts=0, **fields,
            )
            return
        start = max(event_time(alert), self.verifier.clock)
        verify = verify_fields(start, params.verify_within, undo=False, escalate=params.escalate)
        await self._act(action, alert, plan, atype, index, key, decision.mode, params.retries, fields, started, verify)

    # --- one decision ------------------------------------------------------------------
    async def _decide(
        self, alert: Alert, rule: Rule, index: int, entry: Mapping[str, Any], request: PendingRequest | None = None
    ) -> None:
        atype = str(entry.get("type"))
        kind = self.registry().get(atype)
        if kind is None:
            _log.error("rule names an action kind this agent does not have", rule=rule.id, action=atype)
            return
        try:
            params = kind.Params.model_validate(dict(entry))
        except ValidationError as exc:  # the loader validates; only a changed kind gets here
            _log.error("invalid action entry", rule=rule.id, action=atype, error=str(exc))
            return
        started = time.monotonic()
        try:
            action = kind(params, self.context)
            target = action.target(alert)
        except Exception as exc:  # noqa: BLE001 - ActionFailed, or a bug in the kind: never a stuck partition
            target = Target("unresolved", alert.fingerprint)
            key = decision_key(rule.id, alert.fingerprint, alert.active_at, index, target.key)
            if self.ledger.status(key) is not None:
                self.metrics.action_duplicates.inc()
                return
            reason = str(exc) if isinstance(exc, ActionFailed) else f"{type(exc).__name__}: {exc}"
            mode = effective_mode(params.mode, self.guards.ceiling)
            if isinstance(exc, TargetRefused):
                await self._refused(alert, atype, index, key, target.key, mode, exc, {})
                return
            await self._failed(alert, atype, index, key, target.key, mode, f"no target: {reason}", 0, {})
            return
        key = decision_key(rule.id, alert.fingerprint, alert.active_at, index, target.key)
        approved_by = request.approved.agent if request is not None and request.approved is not None else None
        status = self.ledger.status(key)
        if status is not None and not (approved_by is not None and status == "pending-approval"):
            self.metrics.action_duplicates.inc()  # decided before: a re-sent or redelivered alert
            return
        action.decision_key = key
        request_id = request.id if request is not None else None
        mode = effective_mode(params.mode, self.guards.ceiling)
        common = dict(request_id=request_id)
        try:
            plan, _ = await self._with_retries(lambda: action.plan(alert, target), params.retries)
        except _Failed as exc:
            if isinstance(exc.__cause__, TargetRefused):
                await self._refused(alert, atype, index, key, target.key, mode, exc.__cause__, common)
                return
            if not (mode == "dry-run" and isinstance(exc.__cause__, NotConfigured)):
                await self._failed(alert, atype, index, key, target.key, mode, str(exc), exc.attempts, common)
                return
            # dry-run before the target is wired up: still decide and audit, saying so
            plan = Plan(target, {}, {}, reason=f"{atype} {target.key} (target not read: {exc})")
        decision = self.guards.decide(key=key, action=atype, params=params, plan=plan, approved_by=approved_by)
        if decision.verdict == "duplicate":
            self.metrics.action_duplicates.inc()
            if request is not None:
                self.ledger.pending.pop(request.id, None)
            return
        fields: dict[str, Any] = dict(common, guards=decision.guards, before=plan.before, after=plan.after)
        start = event_time(alert) if request is None else max(event_time(alert), self.verifier.clock)
        if decision.verdict == "dry-run" and params.verifies("dry-run"):  # what would have been known
            fields["verify"] = verify_fields(start, params.verify_within, undo=False, escalate=False)
        verify = None
        if params.verifies(decision.mode):
            verify = verify_fields(start, params.verify_within, undo=params.undo, escalate=params.escalate)
        if decision.verdict != "act":
            outcome, reason = decision.verdict, decision.reason
            if outcome == "pending-approval":  # tell the approver how, in the record itself
                fields["id"] = new_record_id()
                timeout = _duration_words(params.approval_timeout)
                reason = f"{plan.reason or atype}: waiting for `watchkeeper actions approve {fields['id'][:12]}` (expires in {timeout})"
            record = await self._record(
                alert, atype, index, key, target.key, decision.mode, outcome, guard=decision.guard,
                reason=reason, attempts=0, **fields,
            )
            if outcome == "pending-approval":
                self._alerts[record.id] = alert
            self._observe_duration(atype, started)
            return
        await self._act(action, alert, plan, atype, index, key, decision.mode, params.retries, fields, started, verify)

    async def _act(
        self, action: Action, alert: Alert, plan: Plan, atype: str, index: int, key: str, mode: str,
        retries: int, fields: dict[str, Any], started: float, verify: Mapping[str, Any] | None = None,
    ) -> None:
        target = plan.target.key
        lock = self.context.lock
        ttl_s = 60.0 + sum(min(self.max_backoff_s, self.backoff_s * 2**i) for i in range(retries)) + 30.0 * (retries + 1)
        if lock is None:
            lease = GuardResult("lease", True, "no lock configured")
        else:
            try:  # a lease write that fails (500, timeout) is retried like the action itself
                lease, _ = await self._with_retries(lambda: take_lease(lock, target, self.agent_id, ttl_s), retries)
            except _Failed as exc:
                fields["guards"] = (*fields["guards"], GuardResult("lease", False, str(exc)))
                await self._failed(alert, atype, index, key, target, mode, str(exc), exc.attempts, fields)
                self._observe_duration(atype, started)
                return
        fields["guards"] = (*fields["guards"], lease)
        if not lease.ok:
            await self._record(alert, atype, index, key, target, mode, "skipped", guard="lease", reason=lease.detail, **fields)
            return
        try:
            after, attempts = await self._with_retries(lambda: action.apply(plan, alert), retries)
        except _Failed as exc:
            await self._failed(alert, atype, index, key, target, mode, str(exc), exc.attempts, fields)
        else:
            fields["after"] = after
            if verify is not None:
                fields["verify"] = verify
            reason = plan.reason or f"{atype} applied"
            await self._record(alert, atype, index, key, target, mode, "executed", reason=reason, attempts=attempts, **fields)
        finally:
            if lock is not None:
                try:
                    await lock.release(target, self.agent_id)
                except Exception as exc:  # noqa: BLE001 - the lease expires on its own
                    _log.warning("could not release the lease; it will expire", target=target, error=str(exc))
            self._observe_duration(atype, started)

    async def _with_retries(self, call: Callable[[], Awaitable[Any]], retries: int) -> tuple[Any, int]:
        """``call()`` with up to ``retries`` retries on transient errors; ``_Failed`` when they run out."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(), attempt
            except ActionFailed as exc:
                raise _Failed(str(exc) or type(exc).__name__, attempt) from exc
            except Exception as exc:  # noqa: BLE001 - transient, or a bug: retried up to the limit
                reason = str(exc) or type(exc).__name__
                if not isinstance(exc, TransientActionError):
                    reason = f"{type(exc).__name__}: {reason}"
                if attempt > retries:
                    raise _Failed(f"{reason} (after {attempt} attempts)", attempt) from exc
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                _log.warning("action attempt failed; retrying", attempt=attempt, delay_s=delay, error=reason)
                await asyncio.sleep(delay)

    async def _failed(
        self, alert: Alert, atype: str, index: int, key: str, target: str, mode: str, reason: str, attempts: int,
        fields: Mapping[str, Any],
    ) -> None:
        await self._record(alert, atype, index, key, target, mode, "failed", reason=reason, attempts=attempts, **fields)
        self.metrics.action_failures.labels(atype).inc()
        if self._annotate is not None and alert.series:
            # the next re-send of the alert carries it (when this agent runs the alert's series)
            self._annotate(alert.rule_id, alert.series, {"remediation_failed": f"{atype} on {target}: {reason}"[:500]})

    async def _refused(
        self, alert: Alert, atype: str, index: int, key: str, target: str, mode: str, refusal: TargetRefused,
        fields: Mapping[str, Any],
    ) -> None:
        """A target the action may not touch (allow-lists, names): audited as skipped by that guard, counted."""
        guards = (GuardResult(refusal.guard, False, refusal.reason),)
        await self._record(
            alert, atype, index, key, target, mode, "skipped", guard=refusal.guard, reason=refusal.reason,
            attempts=0, guards=guards, **fields,
        )
        self.metrics.action_targets_refused.labels(atype, refusal.guard).inc()

    async def _record(
        self, alert: Alert, atype: str, index: int, key: str, target: str, mode: str, outcome: str, **more: Any
    ) -> AuditRecord:
        record = AuditRecord(
            decision_key=key, rule_id=alert.rule_id, alertname=alert.name, fingerprint=alert.fingerprint,
            alert_active_at=alert.active_at, action=atype, action_index=index, target=target, mode=mode,
            outcome=outcome, ts=self._clock(), labels=dict(alert.labels), agent=self.agent_id, **more,
        )
        await self.emit(record)
        return record

    async def emit(self, record: AuditRecord) -> None:
        """Publish (waits for the broker), then count, log and remember the record."""
        try:
            await self._publish(record)
        except Exception as exc:
            raise AuditNotDurable(f"audit record {record.id} not acknowledged: {exc}") from exc
        self.observe(record)
        self.metrics.actions.labels(record.action, record.outcome).inc()
        log = _log.warning if record.outcome == "failed" else _log.info
        log("remediation decision", **_log_fields(record))
        if self._on_audit is not None:
            self._on_audit(record)

    def _observe_duration(self, atype: str, started: float) -> None:
        self.metrics.action_duration.labels(atype).observe(time.monotonic() - started)

    # --- approvals ---------------------------------------------------------------------
    async def answer(self, id_or_prefix: str, *, by: str, approve: bool, reason: str = "") -> AuditRecord:
        """Approve or reject a pending request (the HTTP API); ``LookupError`` if none waits."""
        request = self.ledger.find_pending(id_or_prefix)
        if request is None:
            raise LookupError(f"no pending request {id_or_prefix!r}")
        if request.approved is not None:
            return request.approved
        record = answer_request(request.record, by=by, approve=approve, ts=self._clock(), reason=reason)
        await self.emit(record)
        return record

    async def sweep(self) -> None:
        """Execute approved requests and expire unanswered ones (every second, and on approvals)."""
        self.wake.clear()
        now = self._clock()
        rules = self._rules_by_id()
        async with self._lock:
            for request in list(self.ledger.approved()):
                approval = request.approved
                assert approval is not None
                if request.record.agent == self.agent_id or now - approval.ts >= self.takeover_s:
                    await self._execute_approved(request, rules)
            for request in list(self.ledger.waiting()):
                pending = request.record
                timeout = self._approval_timeout(pending, rules)
                mine = pending.agent == self.agent_id
                if now - pending.ts >= timeout + (0.0 if mine else self.takeover_s):
                    record = answer_request(pending, by=self.agent_id, approve=False, ts=now, outcome="expired")
                    await self.emit(record)
                    self._alerts.pop(pending.id, None)

    async def _execute_approved(self, request: PendingRequest, rules: Mapping[str, Rule]) -> None:
        pending = request.record
        rule = rules.get(pending.rule_id)
        entry = rule.actions[pending.action_index] if rule is not None and pending.action_index < len(rule.actions) else None
        if rule is None or entry is None or entry.get("type") != pending.action:
            by = request.approved.agent if request.approved else self.agent_id
            record = answer_request(pending, by=by, approve=False, ts=self._clock(), reason="the rule or its action changed since the request")
            await self.emit(record)
            return
        alert = self._alerts.pop(pending.id, None) or _alert_from(pending)
        await self._decide(alert, rule, pending.action_index, entry, request=request)
        self.ledger.pending.pop(pending.id, None)  # settled by the record above, or dropped as decided

    def _approval_timeout(self, pending: AuditRecord, rules: Mapping[str, Rule]) -> float:
        rule = rules.get(pending.rule_id)
        if rule is not None and pending.action_index < len(rule.actions):
            kind = self.registry().get(pending.action)
            if kind is not None:
                try:
                    return float(kind.Params.model_validate(dict(rule.actions[pending.action_index])).approval_timeout)
                except ValidationError:
                    pass
        return 1800.0


def _derived_key(what: str, record_id: str) -> str:
    """The decision key of the verification (or undo) of one executed record: one each, ever."""
    return hashlib.sha256(f"{what}|{record_id}".encode()).hexdigest()


def _page_alert(verdict: Verdict, record: AuditRecord) -> Alert:
    """The ``WatchkeeperActionNotRecovered`` page: the rule, action and target in labels, evidence in annotations."""
    done = verdict.watch.record
    labels = {
        "alertname": NOT_RECOVERED_ALERT,
        "severity": "page",
        "rule": done.rule_id,
        "action": done.action,
        "target": done.target,
        "source_alertname": done.alertname,
        **({"undo": "true"} if done.undo_of else {}),
    }
    alert = verdict.alert
    evidence = dict(alert.evidence) if alert is not None else {}
    annotations = {
        "summary": f"{done.alertname}: {verdict.summary}"[:500],
        "description": (
            f"{verdict.reason}. Action record {done.id}, verification {record.id}; "
            f"{'the undo did not help either' if done.undo_of else 'undo: ' + ('follows' if verdict.watch.undo else 'off for this rule')}."
        )[:1000],
        "audit_id": record.id,
    }
    return Alert(
        fingerprint=fingerprint(labels), rule_id=f"watchkeeper/{NOT_RECOVERED_ALERT}", state=AlertState.FIRING,
        labels=labels, annotations=annotations, active_at=verdict.at,
        value=alert.value if alert is not None else math.nan, fired_at=verdict.at, evidence=evidence, at=verdict.at,
    )


def _alert_from(record: AuditRecord) -> Alert:
    """The alert a pending request was made for, rebuilt from the record (another agent asked)."""
    return Alert(
        fingerprint=record.fingerprint,
        rule_id=record.rule_id,
        state=AlertState.FIRING,
        labels=dict(record.labels),
        annotations={},
        active_at=record.alert_active_at,
        value=math.nan,
    )


def _duration_words(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _log_fields(record: AuditRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["audit_id"] = data.pop("id")
    data.pop("labels", None)
    return data
