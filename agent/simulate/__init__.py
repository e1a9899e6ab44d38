"""``watchkeeper simulate FILE...``: chaos scenarios run end to end, expectations checked.

Each scenario (see ``simulations/README.md``) gets its own broker (the embedded one
unless ``--bootstrap`` names one), its own agent, topics and consumer group, and, when
it asks for one, a real Alertmanager whose Slack receiver is recorded. One line per
expectation is printed; the exit status is 1 when any expectation failed or a scenario
could not run, 0 otherwise (skipped scenarios print why and do not fail the suite).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from agent.errors import WatchkeeperError
from simulations.scenario import ScenarioError, load_scenario

from .report import write_reports, write_suite_summary
from .preflight import RunSettings
from .runner import ScenarioRun, run_scenario
from .scoreboard import SCOREBOARD_FILE, suite_scoreboard

__all__ = ["RunSettings", "run_simulations", "scenario_files"]


def scenario_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders expand to their ``*.yaml`` files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(f for f in p.glob("*.yaml") if f.name != SCOREBOARD_FILE) if p.is_dir() else [p])
    return out


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.fields[name]}"), BarColumn(), TextColumn("{task.completed:>6.0f}/{task.total:.0f} s"),
        TextColumn("{task.fields[what]}"), TimeElapsedColumn(), transient=True, console=Console(stderr=True),
    )


def _print_run(run: ScenarioRun, folder: Path, out: TextIO) -> None:
    name = run.scenario.name
    if run.skipped:
        out.write(f"SKIP  {name}: {run.skipped}\n")
        return
    if run.error:
        out.write(f"ERROR {name}: {run.error}\n")
    detect = [f"{r.measured['detect_s']:g}" for r in run.results if "detect_s" in r.measured]
    resolve = [f"{r.measured['resolve_s']:g}" for r in run.results if "resolve_s" in r.measured]
    timing = f"detect {'/'.join(detect) or '-'} s, resolve {'/'.join(resolve) or '-'} s after the fault (event time)"
    mark = run.status + " " * max(1, 6 - len(run.status))
    out.write(f"{mark}{name}: {timing}; {run.produced} events, "
              f"{run.scenario.duration_s:g} s in {run.wall_s:.1f} s wall; report {folder}/summary.md\n")
    if run.status == "XPASS":
        out.write(f"  XPASS {name}: passed although marked xfail ({run.scenario.xfail}): remove the mark\n")
    for r in run.results:
        if not r.ok:
            out.write(f"  {'XFAILED' if run.scenario.xfail else 'FAILED'} {name}: {r.name}: {r.detail}\n")
    out.flush()


async def _run_all(files: list[Path], settings: RunSettings, out: TextIO, show_progress: bool) -> list[ScenarioRun]:
    runs: list[ScenarioRun] = []
    progress = _progress(show_progress)
    if progress is not None:
        progress.start()
    try:
        for file in files:
            scenario, base = load_scenario(file)
            if progress is not None:
                task = progress.add_task("", total=scenario.duration_s, name=scenario.name, what="starting")

                def update(t: float, what: str, task: int = task) -> None:
                    progress.update(task, completed=t, what=what)
            else:
                def update(t: float, what: str) -> None:
                    pass

            run = await run_scenario(scenario, file, base, settings, update)
            if progress is not None:
                progress.remove_task(task)
            folder = write_reports(run, settings.out)
            _print_run(run, folder, out)
            runs.append(run)
    finally:
        if progress is not None:
            progress.stop()
    return runs


def run_simulations(
    paths: Sequence[str | Path], settings: RunSettings, *, out: TextIO | None = None, progress: bool | None = None
) -> int:
    """Run every scenario file; write reports under ``settings.out``; return the exit status."""
    out = out or sys.stdout
    files = scenario_files(paths)
    if not files:
        out.write("simulate: no scenario files given\n")
        return 1
    for file in files:  # validate all first: a typo in the last file fails in a second, not minutes
        try:
            load_scenario(file)
        except ScenarioError as exc:
            out.write(f"simulate: {exc}\n")
            return 1
    started = time.monotonic()
    show = sys.stderr.isatty() if progress is None else progress
    runs = asyncio.run(_run_all(files, settings, out, show))
    wall = time.monotonic() - started
    try:
        board = suite_scoreboard(runs)
    except WatchkeeperError as exc:
        out.write(f"simulate: {exc}\n")
        return 1
    write_suite_summary(runs, settings.out, wall, board)
    missed = board.failures() if board is not None else []
    for line in missed:
        out.write(f"FAILED scoreboard: {line}\n")
    passed = sum(r.status == "PASS" for r in runs)
    skipped = sum(bool(r.skipped) for r in runs)
    xfail = sum(r.status in ("XFAIL", "XPASS") for r in runs)
    failed = sum(not r.ok for r in runs)
    out.write(
        f"simulate: {passed} passed, {failed} failed, {skipped} skipped, {xfail} xfail/xpass in {wall:.1f} s; "
        f"summary {settings.out}/summary.md\n"
    )
    return 1 if failed or missed else 0
