"""The policy backtest's report: ``report.md`` and ``timeline.png``, the same bytes on every run.

Reproducible by construction: every time shown is event time (UTC), rows are in replay
order (event time, then the remediator's order), counters are sorted by name, audit
record ids (random) are never shown, the plot's x axis is minutes since the window's
start, and the PNG carries no software version or date (``metadata``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from actions.audit import AuditRecord
from actions.ledger import BUDGET_WINDOW_S
from agent.model import AlertState

from .labels import ACTING, Incident, pages, score_actions
from .replay import PolicyRun, PolicySettings

__all__ = ["ReportInputs", "to_markdown", "write_report"]

_PNG_METADATA = {"Software": None, "Title": "watchkeeper policy backtest", "Author": None, "Description": None}
_MAX_SIGNALS = 6


@dataclass(frozen=True)
class ReportInputs:
    """What the report says it was run on (shown, never re-read)."""

    source: str
    rules: Sequence[str]
    settings: PolicySettings
    incidents: Sequence[Incident] | None = None
    targets_file: str | None = None


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _series(labels: object) -> str:
    items = dict(labels)  # type: ignore[call-overload]
    shown = {k: v for k, v in sorted(items.items()) if k not in ("alertname", "severity", "team")}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "-"


def _budget_rows(records: Sequence[AuditRecord], settings: PolicySettings) -> list[str]:
    executed = [r for r in records if r.outcome == "executed"]
    rows = []
    for r in executed:
        fleet = sum(1 for e in executed if r.ts - BUDGET_WINDOW_S < e.ts <= r.ts)
        target = sum(1 for e in executed if e.target == r.target and r.ts - BUDGET_WINDOW_S < e.ts <= r.ts)
        limit = next((g.detail.split(" of ")[1].split(" ")[0] for g in r.guards if g.name == "budget-target"), "?")
        rows.append(f"| {_utc(r.ts)} | {_cell(r.target)} | {target} of {limit} | {fleet} of {settings.fleet_max_per_hour} |")
    return rows


def _incidents_of(run: PolicyRun, given: Sequence[Incident] | None) -> tuple[list[Incident], bool]:
    """The labelled incidents, else the firing intervals of every alert merged (labelled=False)."""
    if given is not None:
        return list(given), True
    spans: dict[tuple[str, float], list[float]] = {}
    for a in run.transitions:
        key = (a.fingerprint, a.active_at)
        if a.state is AlertState.FIRING and a.fired_at is not None:
            spans.setdefault(key, [a.fired_at, run.end])
        elif a.state is AlertState.RESOLVED and key in spans:
            spans[key][1] = a.resolved_at if a.resolved_at is not None else run.end
    merged: list[list[float]] = []
    for start, end in sorted(spans.values()):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [Incident(s, e) for s, e in merged], False


def to_markdown(run: PolicyRun, inputs: ReportInputs) -> str:
    s = inputs.settings
    records = run.records
    namespaces = ", ".join(sorted(s.namespaces)) if s.namespaces is not None else "any (no allow-list)"
    lines = [
        "# Policy backtest",
        "",
        f"- events: {inputs.source}",
        f"- window (event time, UTC): {_utc(run.start)} to {_utc(run.end)}",
        f"- rules: {', '.join(inputs.rules)}",
        f"- mode ceiling: {s.ceiling}; fleet budget: {s.fleet_max_per_hour} actions per hour; namespaces: {namespaces}",
        f"- targets: {inputs.targets_file or 'defaults'} (simulated: no cluster or registry was contacted)",
        f"- replayed {run.events} events; skipped: "
        + (", ".join(f"{k} {v}" for k, v in sorted(run.skipped.items())) or "none"),
        "",
        "## Decisions",
        "",
        "| outcome | decisions |",
        "|---|---|",
    ]
    for outcome, n in sorted(Counter(r.outcome for r in records).items()):
        lines.append(f"| {outcome} | {n} |")
    if not records:
        lines.append("| (none) | 0 |")
    refusals = Counter(r.guard for r in records if r.outcome == "skipped" and r.guard)
    lines += ["", "### Refusals by guard", "", "| guard | refusals |", "|---|---|"]
    lines += [f"| {g} | {n} |" for g, n in sorted(refusals.items())] or ["| (none) | 0 |"]
    lines += [
        "",
        "## Actions",
        "",
        "Each decision the policy would have taken, in event time: `executed` would have changed the target,"
        " `skipped` names the guard that refused.",
        "",
        "| # | time (UTC) | alert | series | action | target | mode | outcome | guard | reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(records, start=1):
        lines.append(
            f"| {n} | {_utc(r.ts)} | {_cell(r.alertname or r.rule_id)} | {_cell(_series(r.labels))} | {r.action} | "
            f"{_cell(r.target)} | {r.mode} | {r.outcome} | {r.guard or '-'} | {_cell(r.reason)} |"
        )
    lines += [
        "",
        "## Budget use over time",
        "",
        "At each execution, the executions in the rolling hour that ends there (this one included).",
        "",
        "| time (UTC) | target | target budget | fleet budget |",
        "|---|---|---|---|",
    ]
    lines += _budget_rows(records, s) or ["| - | (no executions) | - | - |"]
    incidents, labelled = _incidents_of(run, inputs.incidents)
    fired = pages(run.transitions)
    lines += [
        "",
        "## Pages per incident",
        "",
        "Incidents: " + ("the labelled ones." if labelled else "no labels given; the firing intervals of the alerts, merged."),
        "",
        "| incident (UTC) | service | pages | alerts |",
        "|---|---|---|---|",
    ]
    inside: set[int] = set()
    for inc in incidents:
        hits = [i for i, a in enumerate(fired) if a.fired_at is not None and inc.covers(a.fired_at) and inc.about(a.labels, "")]
        inside.update(hits)
        names = ", ".join(sorted(Counter(fired[i].name or fired[i].rule_id for i in hits))) or "-"
        lines.append(f"| {_utc(inc.start)} to {_utc(inc.end)} | {inc.service or '-'} | {len(hits)} | {_cell(names)} |")
    if not incidents:
        lines.append("| (none) | - | 0 | - |")
    lines += ["", f"Pages outside every incident: {len(fired) - len(inside)}; pages in all: {len(fired)}."]
    if labelled:
        score = score_actions(records, incidents)
        lines += [
            "",
            "## Action precision and recall",
            "",
            "An action (outcome " + " or ".join(f"`{o}`" for o in sorted(ACTING)) + ") is right when it falls in a"
            " labelled incident about its service; recall counts incidents with at least one right action.",
            "",
            "| actions | right | precision | incidents | remediated | recall |",
            "|---|---|---|---|---|---|",
            f"| {score.actions} | {score.right} | {_pct(score.precision)} | {score.incidents} | {score.remediated} | {_pct(score.recall)} |",
        ]
    lines += ["", "## Simulated targets", "", "| target | change |", "|---|---|"]
    lines += [f"| {_cell(t)} | {_cell(c)} |" for t, c in run.targets.changes] or ["| (none) | - |"]
    lines += ["", "![timeline](timeline.png)", ""]
    return "\n".join(lines)


def _plot(run: PolicyRun, incidents: Sequence[Incident] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def x(ts: float) -> float:
        return (ts - run.start) / 60.0

    fig, (sig, ev) = plt.subplots(2, 1, figsize=(13, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for inc in incidents or ():
        for ax in (sig, ev):
            ax.axvspan(x(inc.start), x(inc.end), color="tab:red", alpha=0.10)
    keys = sorted(run.signal, key=lambda k: (-len(run.signal[k]), k))[:_MAX_SIGNALS]
    for key in sorted(keys):
        pts = run.signal[key]
        sig.plot([x(t) for t, _ in pts], [v for _, v in pts], lw=1.0, label=f"{key[0].split('/')[-1]} {'/'.join(key[1])}"[:60])
    sig.set_ylabel("detector value")
    sig.set_title("policy backtest: signal, alerts, actions, guard refusals (event time)")
    if keys:
        sig.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    rows: dict[str, int] = {}
    fired: dict[tuple[str, float], float] = {}
    for a in run.transitions:
        row = rows.setdefault(a.name or a.rule_id, len(rows))
        key = (a.fingerprint, a.active_at)
        if a.state is AlertState.FIRING and a.fired_at is not None:
            fired.setdefault(key, a.fired_at)
        elif a.state is AlertState.RESOLVED and key in fired:
            start = fired.pop(key)
            ev.plot([x(start), x(a.resolved_at or run.end)], [row, row], lw=6, color="tab:orange", solid_capstyle="butt")
    for (fp, _), start in sorted(fired.items()):
        name = next((a.name or a.rule_id for a in run.transitions if a.fingerprint == fp), "")
        ev.plot([x(start), x(run.end)], [rows[name], rows[name]], lw=6, color="tab:orange", solid_capstyle="butt")
    style = {"executed": ("^", "tab:green"), "dry-run": ("o", "tab:blue"), "pending-approval": ("s", "tab:olive")}
    act_rows: dict[str, int] = {}
    shown: set[str] = set()
    for r in run.records:  # one row per action entry, so refusals of two entries at one moment stay apart
        row = act_rows.setdefault(f"{r.alertname or r.rule_id} action {r.action_index}", len(rows) + len(act_rows))
        marker, color = style.get(r.outcome, ("x", "tab:red"))
        label = r.outcome if r.outcome not in shown else None
        shown.add(r.outcome)
        ev.scatter([x(r.ts)], [row], marker=marker, color=color, s=40, zorder=3, label=label)
        if r.outcome == "skipped" and r.guard:
            ev.annotate(r.guard, (x(r.ts), row), textcoords="offset points", xytext=(3, 5), fontsize=6)
    ticks = {**rows, **act_rows}
    ev.set_yticks(list(ticks.values()), list(ticks), fontsize=7)
    ev.set_ylim(-0.8, len(ticks) - 0.2)
    if shown:
        ev.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ev.set_xlim(0, max(x(run.end), 1.0 / 60))
    ev.set_xlabel("minutes since the window's start")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata=_PNG_METADATA)
    plt.close(fig)


def write_report(run: PolicyRun, inputs: ReportInputs, out: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``timeline.png`` under ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, png = out / "report.md", out / "timeline.png"
    md.write_text(to_markdown(run, inputs), encoding="utf-8")
    _plot(run, inputs.incidents, png)
    return md, png


