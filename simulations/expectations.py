"""Checking a scenario's expectations against what the run observed, in event time.

The runner collects :class:`Observed` (alert transitions from the alerts topic, audit
records from the audit topic, pages that reached Slack, processed positions) and
:func:`check` turns every expectation into one :class:`Result` with a line a person can
read and the measured numbers (detection delay from the fault's start, resolution
delay from its end, both in event seconds). Nothing here does I/O, so the unit tests
feed it hand-made observations.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .scenario import (
    ActionExpectation,
    AlertExpectation,
    AlertSpec,
    Expectation,
    FlagExpectation,
    NoAlertExpectation,
    OnlyExpectedAlertsExpectation,
    PageExpectation,
    Scenario,
)

__all__ = ["Observed", "Page", "Result", "check"]


@dataclass(frozen=True)
class Page:
    """One notification that reached the pager (Slack through Alertmanager, or the agent's sink)."""

    wall: float
    status: str  # "firing" | "resolved"
    alertname: str
    labels: Mapping[str, str]


@dataclass
class Observed:
    """Everything a run saw. Alert times are event epochs; ``wall`` fields are wall epochs."""

    start_ts: float
    transitions: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    pages: list[Page] | None = None  # None: no pager was watched
    produced: int = 0
    missing: int | None = None  # produced records never processed; None: not measured
    infra_wall: dict[str, tuple[float, float]] = field(default_factory=dict)  # fault id -> (down, back)
    pages_via_alertmanager: bool = False
    targets: frozenset[str] = frozenset()  # "kubernetes", "mlflow": configured for this run

    def at(self, event_ts: float | None) -> float | None:
        """Event epoch -> scenario seconds."""
        return None if event_ts is None else event_ts - self.start_ts


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str
    measured: dict[str, Any] = field(default_factory=dict)


def _matches(labels: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in want.items())


def _of(obs: Observed, spec: AlertSpec, state: str) -> list[dict[str, Any]]:
    return [
        t for t in obs.transitions
        if t.get("state") == state and t["labels"].get("alertname") == spec.name and _matches(t["labels"], spec.labels)
    ]


def _series(spec: AlertSpec) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in spec.labels.items())
    return f"{spec.name}{{{labels}}}"


def _alert(s: Scenario, obs: Observed, spec: AlertSpec) -> Result:
    fault = s.fault(spec.fault)
    name = f"alert {_series(spec)}"
    firing = sorted(_of(obs, spec, "firing"), key=lambda t: t["fired_at"] or t["active_at"])
    if fault is not None:
        firing = [t for t in firing if (obs.at(t["fired_at"]) or 0.0) >= fault.start_s] or firing
    if not firing:
        seen = sorted({t["labels"].get("alertname", "") for t in obs.transitions if t.get("state") == "firing"})
        return Result(name, False, f"never fired (alerts that did fire: {', '.join(seen) or 'none'})")
    first = firing[0]
    fired_s = obs.at(first["fired_at"])
    measured: dict[str, Any] = {"fired_at_s": fired_s, "fingerprint": first["fingerprint"], "wall_fired": first.get("_wall")}
    problems: list[str] = []
    parts: list[str] = []
    if fault is not None and fired_s is not None:
        delay = fired_s - fault.start_s
        measured["detect_s"] = round(delay, 1)
        parts.append(f"fired {delay:.0f} s after {fault.id} started")
        if spec.fires_within_s is not None and delay > spec.fires_within_s:
            problems.append(f"fired {delay:.0f} s after {fault.id} started, later than {spec.fires_within_s:g} s")
    if spec.evidence:
        text = "\n".join(str(v) for v in (first.get("annotations") or {}).values())
        measured["annotations"] = first.get("annotations") or {}
        missing = [want for want in spec.evidence if want not in text]
        if missing:
            problems.append(f"its annotations lack {', '.join(repr(m) for m in missing)}")
        else:
            parts.append(f"annotations carry {', '.join(repr(w) for w in spec.evidence)}")
    if spec.resolves_within_s is not None and fault is not None:
        ours = [t for t in obs.transitions if t["fingerprint"] == first["fingerprint"]]
        last = ours[-1]
        if last.get("state") != "resolved":
            problems.append(f"still {last.get('state')} at the end (never resolved after {fault.id} ended)")
        else:
            resolved_s = obs.at(last["resolved_at"]) or 0.0
            delay = resolved_s - fault.end_s
            measured.update(resolved_at_s=resolved_s, resolve_s=round(delay, 1))
            parts.append(f"resolved {delay:.0f} s after it ended" if delay >= 0 else f"resolved {-delay:.0f} s before it ended")
            if delay > spec.resolves_within_s:
                problems.append(f"resolved {delay:.0f} s after {fault.id} ended, later than {spec.resolves_within_s:g} s")
    if problems:
        return Result(name, False, "; ".join(problems), measured)
    return Result(name, True, "; ".join(parts) or "fired", measured)


def _no_alert(obs: Observed, spec: AlertSpec) -> Result:
    firing = _of(obs, spec, "firing")
    name = f"no alert {_series(spec)}"
    if firing:
        at = obs.at(firing[0]["fired_at"]) or 0.0
        return Result(name, False, f"fired at {at:.0f} s ({len(firing)} firing transition(s))")
    return Result(name, True, "never fired")


def _steady(s: Scenario, obs: Observed) -> list[Result]:
    end = s.steady_end_s
    results = []
    if "alerts" in s.steady_state.forbid:
        early = [t for t in obs.transitions if t.get("state") == "firing" and (obs.at(t["fired_at"]) or 0.0) < end]
        detail = (
            "fired during the steady state: " + ", ".join(f"{t['labels'].get('alertname')} at {obs.at(t['fired_at']):.0f} s" for t in early[:5])
            if early else "no alert fired"
        )
        results.append(Result(f"steady state (0-{end:g} s): no alerts", not early, detail))
    if "actions" in s.steady_state.forbid:
        early_actions = [a for a in obs.audit if (obs.at(a.get("alert_active_at")) or 0.0) < end]
        detail = f"{len(early_actions)} action decision(s) for alerts of the steady state" if early_actions else "no action"
        results.append(Result(f"steady state (0-{end:g} s): no actions", not early_actions, detail))
    return results


def _action(obs: Observed, e: ActionExpectation) -> Result:
    spec = e.action
    wanted = spec.outcome
    unconfigured = spec.needs is not None and spec.needs not in obs.targets and spec.without_target is not None
    if unconfigured:
        wanted = spec.without_target or []
    name = f"action {spec.type}" + (f" on {spec.target}" if spec.target else "") + f" ({'|'.join(wanted)})"
    records = [
        a for a in obs.audit
        if a.get("action") == spec.type and (spec.target is None or a.get("target") == spec.target)
    ]
    hits = [a for a in records if a.get("outcome") in wanted]
    outcomes = Counter(a.get("outcome") for a in records)
    measured: dict[str, Any] = {"count": len(hits), "outcomes": dict(outcomes)}
    if hits:
        measured["wall_first"] = min(a.get("ts", 0.0) for a in hits)
    seen = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) or "no audit record"
    if unconfigured:
        seen += f"; no {spec.needs} configured"
    if spec.exactly is not None and spec.at_least is None and len(hits) != spec.exactly:
        return Result(name, False, f"happened {len(hits)} time(s), expected exactly {spec.exactly} ({seen})", measured)
    if spec.at_least is not None and len(hits) < spec.at_least:
        return Result(name, False, f"happened {len(hits)} time(s), expected at least {spec.at_least} ({seen})", measured)
    if spec.min_attempts is not None:
        attempts = [int(a.get("attempts") or 0) for a in hits]
        measured["attempts"] = attempts
        if not attempts or min(attempts) < spec.min_attempts:
            return Result(name, False, f"took {attempts or 'no'} attempt(s), expected at least {spec.min_attempts} (a retried call)", measured)
    return Result(name, True, f"happened {len(hits)} time(s) ({seen})", measured)


def _only_expected(s: Scenario, obs: Observed, allow: list[str]) -> Result:
    named = {e.alert.name for e in s.expect if isinstance(e, AlertExpectation)} | set(allow)
    fired = Counter(t["labels"].get("alertname", "") for t in obs.transitions if t.get("state") == "firing")
    extra = sorted(n for n in fired if n not in named)
    if extra:
        return Result("only expected alerts", False, f"unexpected alert(s) fired: {', '.join(extra)}", {"unexpected": extra})
    return Result("only expected alerts", True, f"fired: {', '.join(sorted(fired)) or 'none'}")


def _page(s: Scenario, obs: Observed, e: PageExpectation) -> Result:
    spec = e.page
    name = f"page {spec.alert}" + (f" after {spec.after_fault}" if spec.after_fault else "")
    if obs.pages is None:
        return Result(name, False, "no pager was watched (the scenario needs alertmanager: true)")
    pages = [p for p in obs.pages if p.status == "firing" and p.alertname == spec.alert and _matches(p.labels, spec.labels)]
    if not pages:
        return Result(name, False, f"the page never arrived ({len(obs.pages)} other notification(s))")
    first = min(p.wall for p in pages)
    measured: dict[str, Any] = {"wall_first_page": first}
    if spec.after_fault is None:
        return Result(name, True, "arrived", measured)
    down, back = obs.infra_wall.get(spec.after_fault, (None, None))
    if down is None or back is None:
        return Result(name, False, f"fault {spec.after_fault} was not acted out", measured)
    late = first - back
    measured["after_recovery_wall_s"] = round(late, 2)
    if first < back:
        return Result(name, False, f"arrived {back - first:.1f} s before {spec.after_fault} ended: the fault did not hold it back", measured)
    if late > spec.within_wall_s:
        return Result(name, False, f"arrived {late:.1f} s after {spec.after_fault} ended, later than {spec.within_wall_s:g} s", measured)
    return Result(name, True, f"arrived {late:.1f} wall s after {spec.after_fault} ended (held back {back - down:.1f} s)", measured)


def _no_duplicate_page(obs: Observed) -> Result:
    name = "no duplicate page"
    if obs.pages is not None and obs.pages_via_alertmanager:
        per = Counter((p.alertname, tuple(sorted(p.labels.items()))) for p in obs.pages if p.status == "firing")
        where = "Slack"
    else:
        # without a pager, one incident is one (fingerprint, active_at): re-sends share it
        incidents: dict[str, set[float]] = defaultdict(set)
        for t in obs.transitions:
            if t.get("state") == "firing":
                incidents[t["fingerprint"]].add(t["active_at"])
        per = Counter({fp: len(v) for fp, v in incidents.items()})
        where = "the alerts topic"
    dup = {k: n for k, n in per.items() if n > 1}
    if dup:
        first = next(iter(dup))
        return Result(name, False, f"{len(dup)} alert(s) paged more than once in {where}, e.g. {first[0] if isinstance(first, tuple) else first} x{dup[first]}")
    return Result(name, True, f"{sum(per.values())} page(s) in {where}, none twice")


def _no_event_lost(obs: Observed) -> Result:
    if obs.missing is None:
        return Result("no event lost", False, "not measured (no processed log)")
    if obs.missing:
        return Result("no event lost", False, f"{obs.missing} of {obs.produced} produced events were never processed", {"missing": obs.missing})
    return Result("no event lost", True, f"all {obs.produced} produced events processed", {"produced": obs.produced})


def _one(s: Scenario, obs: Observed, e: Expectation) -> Result:
    if isinstance(e, AlertExpectation):
        return _alert(s, obs, e.alert)
    if isinstance(e, NoAlertExpectation):
        return _no_alert(obs, e.no_alert)
    if isinstance(e, ActionExpectation):
        return _action(obs, e)
    if isinstance(e, OnlyExpectedAlertsExpectation):
        return _only_expected(s, obs, e.only_expected_alerts.allow)
    if isinstance(e, PageExpectation):
        return _page(s, obs, e)
    if isinstance(e, FlagExpectation):
        return _no_event_lost(obs) if e.no_event_lost else _no_duplicate_page(obs)
    raise TypeError(f"unknown expectation {e!r}")


def check(s: Scenario, obs: Observed) -> list[Result]:
    """Every expectation of ``s`` (the steady state first), each as one result."""
    return _steady(s, obs) + [_one(s, obs, e) for e in s.expect]
