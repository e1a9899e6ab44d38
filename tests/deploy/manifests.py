"""Helpers for the deployment tests: render the kustomize overlays, find metric names.

Rendering uses ``kubectl kustomize`` from a kubectl >= 1.21 (older ones bundle kustomize
v2, which predates the fields these manifests use); without one, the base's files are
loaded as they are, without the generated ConfigMaps, and the overlays cannot be rendered.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose"
KUBECTL_CANDIDATES = (
    Path(shutil.which("kubectl") or "/nonexistent/kubectl"),
    Path.home() / ".cache/watchkeeper/k8s-v1.20.2/bin/kubectl",
)
#: the manifests use kustomize v4+ fields (labels, replicas, patches with a target),
#: bundled in kubectl since 1.21; kubectl 1.20 carries kustomize v2 and rejects them
MIN_KUBECTL_MINOR = 21
#: metrics the dashboard and alerts may name that other in-flight work adds; each must
#: appear in agent/runtime/selfmetrics.py once that work lands (test_metric_names says which are still missing)
IN_FLIGHT_METRICS: frozenset[str] = frozenset({
    "watchkeeper_actions_total",
    "watchkeeper_action_failures_total",
    "watchkeeper_action_duration_seconds",
    "watchkeeper_actions_pending_approval",
})


def kubectl() -> Path | None:
    """A kubectl whose built-in kustomize renders these manifests, or None."""
    for candidate in KUBECTL_CANDIDATES:
        if not candidate.is_file():
            continue
        probe = subprocess.run([str(candidate), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
        try:
            minor = int(re.sub(r"\D", "", json.loads(probe.stdout)["clientVersion"]["minor"]))
        except (ValueError, KeyError):
            continue
        if minor >= MIN_KUBECTL_MINOR:
            return candidate
    return None


def render(target: str) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k deploy/kubernetes/<target>`` would send."""
    binary = kubectl()
    if binary is None:
        if target != "base":
            raise LookupError("kubectl (with kustomize) is needed to render overlays")
        docs: list[dict[str, Any]] = []
        for path in sorted((KUBE / "base").glob("*.yaml")):
            if path.name != "kustomization.yaml":
                docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
        return docs
    out = subprocess.run([str(binary), "kustomize", str(KUBE / target)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


_METRIC = re.compile(r"\b(watchkeeper_[a-z0-9_]+)\b")


def metric_names(promql: str) -> set[str]:
    """``watchkeeper_*`` series a query reads, folded to the metric's name (histogram suffixes off)."""
    names = set()
    for name in _METRIC.findall(promql):
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and not name.endswith("_total"):
                name = name[: -len(suffix)]
        names.add(name)
    return names


def exported_metric_names() -> set[str]:
    """Every metric family the agent registers, as Prometheus names them on /metrics."""
    from agent.runtime.selfmetrics import SelfMetrics

    names = set()
    for family in SelfMetrics().registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names
