"""Did the action work? Verification after act, judged on event time only.

An executed action (or, with ``verify: true``, a dry-run decision) arms a :class:`Watch`:
from the event time it acted at, the alert that triggered it has ``verify_within`` of
event time to resolve. The remediation consumer feeds every snapshot of the alerts
topic (FIRING transitions, their re-sends, RESOLVED transitions) to
:meth:`Verifier.observe`, which answers with a :class:`Verdict` once one is known:

``recovered``
    the same incident (fingerprint and ``active_at``) resolved by ``until``.
``not_recovered``
    a snapshot taken at or after ``until`` still fires, or it resolved only later.
``inconclusive``
    the evidence cannot tell: no event of the series after the action, or the series
    went quiet for ``quiet_s`` (the pipeline's staleness) before it resolved (a quiet
    series resolves without having recovered), or a snapshot without event-time stamps,
    or no news of the alert ``grace_s`` after ``until``. An inconclusive verdict never
    undoes anything: low traffic is not evidence that an action failed.

Event time comes from the snapshots themselves: the pipeline stamps each with ``at``
(its event clock) and ``last_event_at`` (the series' newest event), and a firing alert
is re-sent every resend interval, so a live incident always moves the clock; replays
and simulations give the same verdicts as the original run. Nothing here reads the
wall clock or does I/O (the remediator records, counts, annotates, pages and undoes).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent.duration import format_duration
from agent.model import Alert, AlertState

from .audit import AuditRecord

__all__ = ["Verdict", "Verifier", "VerifyOutcome", "Watch", "describe", "event_time", "verify_fields"]

VerifyOutcome = Literal["recovered", "not_recovered", "inconclusive"]


def event_time(alert: Alert) -> float:
    """The event time a snapshot speaks for: its stamp, else when it resolved, fired or began."""
    for value in (alert.at, alert.resolved_at, alert.fired_at):
        if value is not None:
            return value
    return alert.active_at


def verify_fields(start: float, within: float, *, undo: bool, escalate: bool) -> dict[str, Any]:
    """The ``verify`` object of an audit record: enough to re-arm the watch after a restart."""
    return {"within": within, "from": start, "until": start + within, "undo": undo, "escalate": escalate}


@dataclass(frozen=True, slots=True)
class Watch:
    """One decision waiting for its verdict (see the module docstring)."""

    record: AuditRecord
    start: float
    until: float
    undo: bool
    escalate: bool

    @classmethod
    def of(cls, record: AuditRecord) -> Watch | None:
        """The watch an audit record asks for, or None (no ``verify`` object, or a bad one)."""
        spec = record.verify
        if not spec or record.outcome not in ("executed", "dry-run"):
            return None
        try:
            start, until = float(spec["from"]), float(spec["until"])
        except (KeyError, TypeError, ValueError):
            return None
        if not until >= start:  # also NaN
            return None
        # an undo is never undone, and a dry-run never changed anything to undo
        undo = bool(spec.get("undo")) and record.undo_of is None and record.outcome == "executed"
        return cls(record, start, until, undo, bool(spec.get("escalate")) and record.outcome == "executed")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one watch, the snapshot that decided it, and whether the alert still fires."""

    watch: Watch
    outcome: VerifyOutcome
    reason: str
    at: float
    alert: Alert | None
    still_firing: bool = False

    @property
    def summary(self) -> str:
        """One line for the alert's annotation and the page: "scaled 3 -> 6 at 10:02, not recovered by 10:07"."""
        words = {"recovered": "recovered", "not_recovered": "not recovered", "inconclusive": "inconclusive"}[self.outcome]
        record = self.watch.record
        done = describe(record)
        if record.outcome == "dry-run":
            done = f"would have {done} (dry-run)"
        by = _clock(self.watch.until)
        return f"{done} at {_clock(self.watch.start)}, {words} by {by}" + (f": {self.reason}" if self.outcome == "inconclusive" else "")


class Verifier:
    """The open watches and the event clock; see the module docstring.

    Parameters
    ----------
    quiet_s
        A series whose newest event is this much older than its resolution resolved by
        going quiet (the pipeline's ``staleness_s``): inconclusive, not recovered.
    grace_s
        Event time after ``until`` to wait for news of the alert before giving up
        (inconclusive); the clock is the newest snapshot of any alert.
    max_watches
        Open watches kept; the oldest are judged inconclusive first when more arrive.
    """

    def __init__(self, *, quiet_s: float = 300.0, grace_s: float = 900.0, max_watches: int = 10_000) -> None:
        self.quiet_s = quiet_s
        self.grace_s = grace_s
        self.max_watches = max_watches
        self.watches: OrderedDict[str, Watch] = OrderedDict()  # action record id -> watch
        self.clock = float("-inf")

    def watch(self, watch: Watch) -> list[Verdict]:
        """Open ``watch``; returns the verdicts of watches pushed out by the bound."""
        self.watches[watch.record.id] = watch
        out: list[Verdict] = []
        while len(self.watches) > self.max_watches:
            _, old = self.watches.popitem(last=False)
            out.append(Verdict(old, "inconclusive", "too many open verifications; the oldest is given up", self.clock, None))
        return out

    def settle(self, record_id: str) -> None:
        """A verification of ``record_id`` was recorded (here or read back): stop watching it."""
        self.watches.pop(record_id, None)

    def observe(self, alert: Alert) -> list[Verdict]:
        """Verdicts this snapshot decides (its own watches, and watches that ran out of news)."""
        at = event_time(alert)
        if at > self.clock:
            self.clock = at
        out: list[Verdict] = []
        for rid, watch in list(self.watches.items()):
            if watch.record.fingerprint == alert.fingerprint:
                verdict = self._judge(watch, alert)
            elif self.clock >= watch.until + self.grace_s:
                reason = f"no snapshot of the alert for {format_duration(self.clock - watch.start)} of event time"
                verdict = Verdict(watch, "inconclusive", reason, self.clock, None)
            else:
                continue
            if verdict is not None:
                del self.watches[rid]
                out.append(verdict)
        return out

    def _judge(self, watch: Watch, alert: Alert) -> Verdict | None:
        start, until = watch.start, watch.until
        if alert.state is AlertState.RESOLVED:
            if alert.active_at < watch.record.alert_active_at:
                return None  # an older incident's late snapshot
            when = alert.resolved_at if alert.resolved_at is not None else event_time(alert)
            quiet = self._quiet(watch, alert, when)
            if quiet:
                return Verdict(watch, "inconclusive", quiet, when, alert)
            if when <= until:
                return Verdict(watch, "recovered", f"resolved at {_clock(when)}, {format_duration(max(0.0, when - start))} after the action", when, alert)
            return Verdict(watch, "not_recovered", f"resolved only at {_clock(when)}, after verify_within", when, alert)
        if alert.state is not AlertState.FIRING:
            return None
        if alert.active_at > watch.record.alert_active_at:
            # a later incident of the series: the watched one resolved and its RESOLVED was not seen
            return Verdict(watch, "inconclusive", "the incident ended unseen; a new one began", event_time(alert), alert, True)
        if alert.at is None or alert.at < until:
            return None
        quiet = self._quiet(watch, alert, alert.at)
        if quiet:
            return Verdict(watch, "inconclusive", quiet, alert.at, alert, True)
        value = "" if alert.value != alert.value else f" (value {alert.value:g})"
        return Verdict(watch, "not_recovered", f"still firing at {_clock(alert.at)}{value}", alert.at, alert, True)

    def _quiet(self, watch: Watch, alert: Alert, when: float) -> str:
        """Why the traffic cannot tell (no event after the action, or a quiet series); "" when it can."""
        last = alert.last_event_at
        if last is None or alert.at is None:
            return "the alert carries no event-time stamps (at, last_event_at): traffic unknown"
        if last <= watch.start:
            return f"no traffic: no event of the series after the action at {_clock(watch.start)}"
        if when - last >= self.quiet_s:
            return f"no traffic: the series went quiet after {_clock(last)} (low traffic, not evidence)"
        return ""


_VERBS = {"scale": "scaled", "rollback": "rolled back", "retrain": "retrained", "notify": "notified"}
_STATE_KEYS = ("replicas", "hpa_min_replicas", "version")


def describe(record: AuditRecord) -> str:
    """What an executed decision changed, in words: "scaled api 3 -> 6", "rolled back fraud 3 -> 2"."""
    verb = _VERBS.get(record.action, record.action)
    if record.undo_of:
        verb = f"undid ({verb})"
    name = record.target.rsplit("/", 1)[-1]
    for key in _STATE_KEYS:
        before, after = _get(record.before, key), _get(record.after, key)
        if before is not None and after is not None and before != after:
            return f"{verb} {name} {before} -> {after}"
    return f"{verb} {name}"


def _get(state: Mapping[str, Any], key: str) -> Any:
    value = state.get(key)
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _clock(ts: float) -> str:
    """Event time as HH:MM UTC (with seconds when they are not zero), for annotations."""
    try:
        parts = time.gmtime(ts)
    except (OverflowError, OSError, ValueError):
        return f"{ts:g}"
    return time.strftime("%H:%M" if parts.tm_sec == 0 else "%H:%M:%S", parts)
