"""Before a scenario runs: the settings every scenario shares, and why one cannot run here.

A scenario that needs what this machine or command line lacks (the remediator, the LLM
trace, Alertmanager, a real MLflow or Kubernetes) is skipped with the reason, never run
half-way and never counted as failed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from simulations.scenario import ActionExpectation, LlmTrace, Scenario

from .pager import ALERTMANAGER_BINARY

__all__ = ["RunSettings", "skip_reason", "with_trace"]


@dataclass(frozen=True)
class RunSettings:
    """What the command line configures for every scenario."""

    out: Path
    bootstrap: str | None = None
    alertmanager_url: str | None = None
    kubeconfig: str | None = None
    mlflow_uri: str | None = None
    llm_trace: str | None = None


def _trace_path(s: Scenario, base: Path, settings: RunSettings) -> list[Path]:
    out = []
    for llm in s.fleet.llm:
        if llm.trace is not None:
            p = Path(settings.llm_trace) if settings.llm_trace else Path(llm.trace.path)
            out.append(p if p.is_absolute() else (base / p))
    return out


def skip_reason(s: Scenario, base: Path, settings: RunSettings) -> str | None:
    """Why this scenario cannot run here, or None."""
    if "actions" in s.requires:
        if importlib.util.find_spec("agent.runtime.remediator") is None:
            return "needs the remediator (agent/runtime/remediator.py), not in this build"
        from actions.registry import ACTIONS

        wanted = {e.action.type for e in s.expect if isinstance(e, ActionExpectation)}
        missing = sorted(wanted - set(ACTIONS))
        if missing:
            return f"needs action kind(s) {', '.join(missing)} in actions/registry.py"
    for path in _trace_path(s, base, settings):
        if not path.is_file():
            return f"LLM trace {path} not found (pass --llm-trace PATH)"
    if s.alertmanager and not settings.alertmanager_url and not ALERTMANAGER_BINARY.is_file():
        return f"needs Alertmanager: {ALERTMANAGER_BINARY} is not installed and --alertmanager-url is not set"
    if settings.alertmanager_url and any(f.kind == "alertmanager_down" for f in s.faults):
        return "stops Alertmanager: runs only with the one it starts itself (no --alertmanager-url)"
    if settings.bootstrap and any(f.kind == "broker_restart" for f in s.faults):
        return "restarts the broker: runs only with the embedded broker (no --bootstrap)"
    if "kubernetes" in s.requires and not settings.kubeconfig:
        return "needs a Kubernetes API (--kubeconfig)"
    if "mlflow" in s.requires and not settings.mlflow_uri:
        return "needs an MLflow server (--mlflow-uri)"
    return None


def with_trace(s: Scenario, settings: RunSettings) -> Scenario:
    if not settings.llm_trace:
        return s
    fleet = s.fleet.model_copy(
        update={"llm": [
            llm.model_copy(update={"trace": LlmTrace(path=settings.llm_trace, speedup=llm.trace.speedup)}) if llm.trace else llm
            for llm in s.fleet.llm
        ]}
    )
    return s.model_copy(update={"fleet": fleet})


