"""The remediation scoreboard: were the chaos scenarios' actions right, and did they come when due?

``simulations/scoreboard.yaml`` (next to the scenario files) says which injected faults
expect a remediation, on which target, and the floors the suite is held to::

    floors: {precision: 1.0, recall: 1.0, max_wrong: 0}
    scenarios:
      bad-deploy:
        remediate:
          - {fault: bad_deploy, target: model/fraud-detector, action: rollback}

Definitions (also in ``docs/policy-backtest.md``):

- an *action* is an audit record with outcome ``executed``, or ``dry-run`` (what a run
  without a real target decides; it would have executed), of a kind that changes a
  target (``notify`` only sends a message: not a remediation, not scored). Verification records
  (``recovered``, ``not_recovered``, ``inconclusive``, linked by ``verify_of``) and
  undos (``undo_of``) are counted in their own columns, not as actions;
- an action is *right* when its scenario declares a fault it remediates with that
  target (and action type, if given), and the alert that triggered it became active
  while that fault was (``start_s <= active_at <= end_s + grace_s``, scenario seconds);
  every other action, including any in a scenario that declares nothing, is *wrong*;
- *precision* = right actions / actions; *recall* = declared faults with at least one
  right action / declared faults (of the scenarios that ran);
- *time to recovery with the action*: from the fault's start to the resolve of the
  alert that triggered the first right action (event time, scenario seconds; ``-``
  if it never resolved in the run); *without*: the entry's ``untreated_s`` if given,
  else the fault's scripted course: its duration plus the alert's resolve delay after
  the fault's end as measured in the run (the scenarios' faults are scripted and do not
  end when an action lands, so the two are equal unless the action made the alert
  resolve before the fault ended).

The suite fails when precision or recall is below its floor or there are more wrong
actions than ``max_wrong`` (default 0: one wrong action fails CI).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import ConfigError

from .runner import ScenarioRun

__all__ = ["SCOREBOARD_FILE", "Scoreboard", "ScoreboardSpec", "load_scoreboard", "score", "score_run", "suite_scoreboard"]

SCOREBOARD_FILE = "scoreboard.yaml"
_ACTING = frozenset({"executed", "dry-run"})
_MESSAGES = frozenset({"notify"})  # kinds that send a message and change no target: not remediations
_VERIFY = ("recovered", "not_recovered", "inconclusive")


class _Remediate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fault: str
    target: str
    action: str | None = None
    grace_s: float = Field(60.0, ge=0)
    untreated_s: float | None = Field(None, ge=0)


class _ScenarioSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    remediate: list[_Remediate] = Field(default_factory=list)


class _Floors(BaseModel):
    model_config = ConfigDict(extra="forbid")
    precision: float = Field(1.0, ge=0, le=1)
    recall: float = Field(1.0, ge=0, le=1)
    max_wrong: int = Field(0, ge=0)


class ScoreboardSpec(BaseModel):
    """``scoreboard.yaml``: the floors and, per scenario name, the faults that expect a remediation."""

    model_config = ConfigDict(extra="forbid")
    floors: _Floors = Field(default_factory=_Floors)
    scenarios: dict[str, _ScenarioSpec] = Field(default_factory=dict)


def load_scoreboard(path: Path) -> ScoreboardSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return ScoreboardSpec.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"cannot read the scoreboard: {exc}", str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not YAML: {exc}", str(path)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", str(path)) from None


@dataclass
class Row:
    """One scenario's line of the scoreboard."""

    scenario: str
    actions: int = 0
    right: int = 0
    wrong: list[str] = field(default_factory=list)  # "action target at N s" of each wrong action
    due: int = 0
    remediated: int = 0
    recovery_with_s: list[float | None] = field(default_factory=list)
    recovery_without_s: list[float] = field(default_factory=list)
    verified: dict[str, int] = field(default_factory=dict)
    undos: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "actions": self.actions, "right": self.right, "wrong": len(self.wrong),
            "wrong_actions": list(self.wrong), "precision": _ratio(self.right, self.actions),
            "incidents": self.due, "remediated": self.remediated, "recall": _ratio(self.remediated, self.due),
            "recovery_with_s": self.recovery_with_s, "recovery_without_s": self.recovery_without_s,
            "verified": dict(sorted(self.verified.items())), "undos": self.undos,
        }


@dataclass
class Scoreboard:
    rows: list[Row]
    floors: _Floors

    @property
    def actions(self) -> int:
        return sum(r.actions for r in self.rows)

    @property
    def right(self) -> int:
        return sum(r.right for r in self.rows)

    @property
    def wrong(self) -> int:
        return sum(len(r.wrong) for r in self.rows)

    @property
    def precision(self) -> float | None:
        return _ratio(self.right, self.actions)

    @property
    def recall(self) -> float | None:
        return _ratio(sum(r.remediated for r in self.rows), sum(r.due for r in self.rows))

    def failures(self) -> list[str]:
        """Why the suite misses its floors; empty when it holds them."""
        out = []
        if self.precision is not None and self.precision < self.floors.precision:
            out.append(f"remediation precision {self.precision:.2f} is below the floor {self.floors.precision:.2f}")
        if self.recall is not None and self.recall < self.floors.recall:
            out.append(f"remediation recall {self.recall:.2f} is below the floor {self.floors.recall:.2f}")
        if self.wrong > self.floors.max_wrong:
            wrong = "; ".join(f"{r.scenario}: {w}" for r in self.rows for w in r.wrong)
            out.append(f"{self.wrong} wrong action(s) (at most {self.floors.max_wrong}): {wrong}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "floors": self.floors.model_dump(), "precision": self.precision, "recall": self.recall,
            "actions": self.actions, "right": self.right, "wrong": self.wrong,
            "undos": sum(r.undos for r in self.rows), "failures": self.failures(), "scenarios": [r.to_dict() for r in self.rows],
        }

    def to_markdown(self) -> list[str]:
        lines = [
            "## Remediation scoreboard",
            "",
            "Right: the action's target is one its scenario declares for a fault that was active when the"
            " triggering alert became active (`simulations/scoreboard.yaml`). Recovery: fault start to the"
            " triggering alert's resolve (with), and the fault's scripted course plus that alert's resolve delay, or the declared"
            " `untreated_s` (without), scenario seconds; `notify` is a message, not scored.",
            "",
            "| scenario | actions | right | wrong | precision | incidents | remediated | recall | recovery with (s) | without (s) | verified | undos |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            verified = ", ".join(f"{k} {v}" for k, v in sorted(r.verified.items())) or "-"
            lines.append(
                f"| {r.scenario} | {r.actions} | {r.right} | {len(r.wrong)} | {_pct(_ratio(r.right, r.actions))} | {r.due} | "
                f"{r.remediated} | {_pct(_ratio(r.remediated, r.due))} | {_times(r.recovery_with_s)} | "
                f"{_times(r.recovery_without_s)} | {verified} | {r.undos} |"
            )
        lines.append(
            f"| **all** | {self.actions} | {self.right} | {self.wrong} | {_pct(self.precision)} | "
            f"{sum(r.due for r in self.rows)} | {sum(r.remediated for r in self.rows)} | {_pct(self.recall)} | | | | "
            f"{sum(r.undos for r in self.rows)} |"
        )
        f = self.floors
        lines += ["", f"Floors: precision >= {f.precision:g}, recall >= {f.recall:g}, wrong actions <= {f.max_wrong}."]
        failures = self.failures()
        lines += [f"**FAILED**: {x}" for x in failures] or ["Floors held."]
        return lines + [""]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _times(values: Sequence[float | None]) -> str:
    return ", ".join("-" if v is None else f"{v:g}" for v in values) or "-"


def _resolved_at(transitions: Sequence[Mapping[str, Any]], fingerprint: Any, active_at: Any) -> float | None:
    """When the alert (by fingerprint) first resolved at or after ``active_at``.

    By fingerprint rather than (fingerprint, active_at): an agent restarted mid-incident
    carries the alert on under a new ``active_at``, and it is that one that resolves.
    """
    if not isinstance(active_at, (int, float)):
        return None
    times = [
        float(t["resolved_at"]) for t in transitions
        if t.get("state") == "resolved" and t.get("fingerprint") == fingerprint
        and isinstance(t.get("resolved_at"), (int, float)) and t["resolved_at"] >= active_at
    ]
    return min(times) if times else None


def score_run(run: ScenarioRun, spec: _ScenarioSpec | None) -> Row:
    """One scenario's row (see the module docstring for the definitions)."""
    s, obs = run.scenario, run.observed
    row = Row(s.name)
    entries = list(spec.remediate) if spec is not None else []
    faults = {f.id: f for f in s.faults}
    for e in entries:
        if e.fault not in faults:
            raise ConfigError(f"scenario {s.name} has no fault {e.fault!r} (has: {', '.join(faults) or 'none'})", SCOREBOARD_FILE)
    row.due = len(entries)
    audit = list(obs.audit) if obs is not None else []
    transitions = list(obs.transitions) if obs is not None else []
    start_ts = obs.start_ts if obs is not None else 0.0
    first_right: dict[int, dict[str, Any]] = {}
    for rec in audit:
        outcome = str(rec.get("outcome"))
        if rec.get("verify_of") is not None or outcome in _VERIFY:
            row.verified[outcome] = row.verified.get(outcome, 0) + 1
            continue
        if rec.get("undo_of") is not None:
            row.undos += 1 if outcome == "executed" else 0
            continue
        if outcome not in _ACTING or rec.get("action") in _MESSAGES:
            continue
        row.actions += 1
        at = float(rec.get("alert_active_at") or 0.0) - start_ts
        hit = next(
            (
                i for i, e in enumerate(entries)
                if e.target == rec.get("target") and (e.action is None or e.action == rec.get("action"))
                and faults[e.fault].start_s <= at <= faults[e.fault].end_s + e.grace_s
            ),
            None,
        )
        if hit is None:
            row.wrong.append(f"{rec.get('action')} {rec.get('target')} ({outcome}) for an alert active at {at:.0f} s")
            continue
        row.right += 1
        first_right.setdefault(hit, rec)
    row.remediated = len(first_right)
    for i, e in enumerate(entries):
        fault = faults[e.fault]
        rec = first_right.get(i)
        resolved = _resolved_at(transitions, rec.get("fingerprint"), rec.get("alert_active_at")) if rec else None
        with_s = None if resolved is None else round(resolved - start_ts - fault.start_s, 1)
        row.recovery_with_s.append(with_s)
        if e.untreated_s is not None:
            row.recovery_without_s.append(e.untreated_s)
        else:  # the scripted course: the whole fault, then the alert's own resolve delay after it
            lag = max(0.0, (with_s or 0.0) - (fault.end_s - fault.start_s))
            row.recovery_without_s.append(round(fault.end_s - fault.start_s + lag, 1))
    return row


def score(runs: Sequence[ScenarioRun], spec: ScoreboardSpec) -> Scoreboard:
    """The scoreboard of the runs that ran (skipped ones have nothing to score)."""
    rows = [score_run(r, spec.scenarios.get(r.scenario.name)) for r in runs if not r.skipped]
    return Scoreboard(rows, spec.floors)


def suite_scoreboard(runs: Sequence[ScenarioRun]) -> Scoreboard | None:
    """The scoreboard of the runs whose folder has a ``scoreboard.yaml``; None when none has.

    Floors come from the first such file (in run order); each run is scored by its own
    folder's declarations.
    """
    specs: dict[Path, ScoreboardSpec] = {}
    scored: list[tuple[ScenarioRun, ScoreboardSpec]] = []
    for run in runs:
        folder = run.file.resolve().parent
        if folder not in specs and (folder / SCOREBOARD_FILE).is_file():
            specs[folder] = load_scoreboard(folder / SCOREBOARD_FILE)
        if folder in specs:
            scored.append((run, specs[folder]))
    if not scored:
        return None
    rows = [score_run(r, spec.scenarios.get(r.scenario.name)) for r, spec in scored if not r.skipped]
    return Scoreboard(rows, scored[0][1].floors)
