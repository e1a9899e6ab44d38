"""Per-scenario reports: ``results.json``, ``summary.md`` and ``signal.png``; and the suite's summary.

The plot shows the signal the first application fault disturbs (over scenario time),
the fault's window shaded, infrastructure faults hatched, and vertical lines where each
expected alert fired and resolved (event time) and where actions were decided.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import ScenarioRun
from .scoreboard import Scoreboard

__all__ = ["write_reports", "write_suite_summary"]


def _status(run: ScenarioRun) -> str:
    return run.status


def to_json(run: ScenarioRun) -> dict[str, Any]:
    s = run.scenario
    obs = run.observed
    return {
        "scenario": s.name,
        "file": str(run.file),
        "status": _status(run),
        "skipped": run.skipped,
        "error": run.error,
        "wall_s": round(run.wall_s, 2),
        "duration_s": s.duration_s,
        "speed": s.speed,
        "event_time_speedup": round(s.duration_s / run.wall_s, 1) if run.wall_s and not run.skipped else None,
        "events_produced": run.produced,
        "events_processed": run.processed,
        "faults": [f.model_dump() | {"end_s": f.end_s} for f in s.faults],
        "expectations": [{"name": r.name, "ok": r.ok, "detail": r.detail, "measured": r.measured} for r in run.results],
        "alerts": [
            {k: t.get(k) for k in ("state", "fingerprint", "active_at", "fired_at", "resolved_at", "value", "labels")}
            | {"at_s": obs.at(t.get("fired_at") if t.get("state") == "firing" else t.get("resolved_at") or t.get("active_at"))}
            for t in (obs.transitions if obs else [])
        ],
        "actions": [{k: a.get(k) for k in ("ts", "action", "target", "outcome", "mode", "guard", "reason", "rule_id")} for a in (obs.audit if obs else [])],
        "pages": [{"wall": p.wall, "status": p.status, "alertname": p.alertname, "labels": dict(p.labels)} for p in (obs.pages or [])] if obs else [],
        "infra_faults_wall": {k: list(v) for k, v in (obs.infra_wall if obs else {}).items()},
        "fault_proxy_refused": run.proxy_refused,
    }


def to_markdown(run: ScenarioRun) -> str:
    s = run.scenario
    lines = [f"# Scenario `{s.name}`: {_status(run)}", ""]
    if s.description:
        lines += [s.description.strip(), ""]
    if run.skipped:
        return "\n".join(lines + [f"Skipped: {run.skipped}", ""])
    if run.error:
        lines += [f"Error: {run.error}", ""]
    if s.xfail:
        lines += [f"Known defect (xfail): {s.xfail}", ""]
    speed = f"paced at {s.speed:g}x" if s.speed else "as fast as the agent consumes"
    lines += [
        f"{s.duration_s:g} s of traffic ({run.produced} events, {speed}) in {run.wall_s:.1f} s wall; "
        f"the agent processed {run.processed} distinct record positions.",
        "",
        "| fault | window (scenario s) | where |",
        "|---|---|---|",
    ]
    for f in s.faults:
        where = ", ".join(f"{k}={v}" for k, v in f.where.items()) or "-"
        lines.append(f"| {f.id} ({f.kind}) | {f.start_s:g}-{f.end_s:g} | {where} |")
    lines += ["", "| expectation | result | detail |", "|---|---|---|"]
    for r in run.results:
        lines.append(f"| {r.name} | {'ok' if r.ok else '**FAILED**'} | {r.detail} |")
    lines += ["", "![signal](signal.png)", ""]
    return "\n".join(lines)


def _plot(run: ScenarioRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, obs = run.scenario, run.observed
    fig, ax = plt.subplots(figsize=(13, 4))
    if run.signal is not None:
        pts = run.signal.points()
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2, color="tab:blue", label=run.signal.label)
    for f in s.app_faults:
        ax.axvspan(f.start_s, f.end_s, color="tab:red", alpha=0.12, label=f"fault {f.id}")
    for f in s.infra_faults:
        ax.axvspan(f.start_s, f.end_s, facecolor="none", edgecolor="tab:gray", hatch="//", label=f"{f.kind}")
    for r in run.results:
        fired, resolved = r.measured.get("fired_at_s"), r.measured.get("resolved_at_s")
        if fired is not None:
            ax.axvline(fired, color="tab:orange", ls="--", lw=1.2, label=f"fired: {r.name.removeprefix('alert ')}")
        if resolved is not None:
            ax.axvline(resolved, color="tab:green", ls=":", lw=1.2, label="resolved")
    if obs is not None and obs.pages_via_alertmanager:
        for page in obs.pages or []:
            at = run.scenario_s_at_wall(page.wall)
            if page.status == "firing" and at is not None:
                ax.axvline(at, color="tab:brown", ls="-.", lw=1.0, label="page reached Slack")
    if obs is not None:
        for a in obs.audit:
            at = run.scenario_s_at_wall(float(a.get("ts") or 0.0))
            if at is not None:
                ax.axvline(at, color="tab:purple", lw=1.5, label=f"action {a.get('action')} ({a.get('outcome')})")
    ax.axvline(s.steady_end_s, color="black", lw=0.6, alpha=0.4)
    ax.set_xlim(0, s.duration_s)
    ax.set_xlabel("scenario time (s)")
    ax.set_title(f"{s.name}: {_status(run)}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_reports(run: ScenarioRun, out: Path) -> Path:
    """Write the three files under ``out/<scenario>/``; returns that folder."""
    folder = out / run.scenario.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(to_json(run), indent=2, default=str))
    (folder / "summary.md").write_text(to_markdown(run))
    if not run.skipped:
        _plot(run, folder / "signal.png")
    return folder


def write_suite_summary(runs: Sequence[ScenarioRun], out: Path, wall_s: float, scoreboard: Scoreboard | None = None) -> None:
    lines = [f"# Simulation suite: {sum(r.status == 'PASS' for r in runs)} passed, "
             f"{sum(bool(r.skipped) for r in runs)} skipped, {sum(r.status in ('XFAIL', 'XPASS') for r in runs)} xfail/xpass, "
             f"{sum(not r.ok for r in runs)} failed ({wall_s:.0f} s wall)", "",
             "| scenario | status | detection (s after fault start) | resolution (s after fault end) | wall s |",
             "|---|---|---|---|---|"]
    for run in runs:
        detect = ", ".join(f"{r.measured['detect_s']:g}" for r in run.results if "detect_s" in r.measured) or "-"
        resolve = ", ".join(f"{r.measured['resolve_s']:g}" for r in run.results if "resolve_s" in r.measured) or "-"
        note = f" ({run.skipped})" if run.skipped else ""
        lines.append(f"| [{run.scenario.name}]({run.scenario.name}/summary.md) | {_status(run)}{note} | {detect} | {resolve} | {run.wall_s:.1f} |")
    if scoreboard is not None:
        lines += [""] + scoreboard.to_markdown()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    summary: dict[str, Any] = {"wall_s": round(wall_s, 1), "scenarios": [to_json(r) for r in runs]}
    if scoreboard is not None:
        summary["scoreboard"] = scoreboard.to_dict()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
