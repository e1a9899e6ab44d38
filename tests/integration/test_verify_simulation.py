"""simulations/verify_undo.yaml against the real Kubernetes control plane: scaled, not recovered, paged, undone."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from agent.runtime.embedded_broker import EmbeddedBroker
from agent.simulate import RunSettings, run_simulations

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(420)  # one paced scenario plus starting Kubernetes, on a loaded machine
def test_the_verify_undo_scenario_scales_verifies_and_undoes(broker: EmbeddedBroker, kube: Any, tmp_path: Path) -> None:
    from kubernetes import client as k8s

    out = tmp_path / "reports"
    printed = io.StringIO()
    settings = RunSettings(out=out, bootstrap=broker.bootstrap, kubeconfig=str(kube.admin_kubeconfig))

    status = run_simulations([REPO / "simulations" / "verify_undo.yaml"], settings, out=printed, progress=False)

    assert status == 0, printed.getvalue()
    decided = [a for a in json.loads((out / "verify-undo" / "results.json").read_text())["actions"] if a["action"] == "scale"]
    assert [a["outcome"] for a in decided][:3] == ["executed", "not_recovered", "executed"]
    with kube.api_client() as api:
        assert k8s.AppsV1Api(api).read_namespaced_deployment("llm-server", "ml-serving").spec.replicas == 2  # undone
