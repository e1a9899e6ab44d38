"""``watchkeeper simulate`` end to end: a real agent, the real broker, reports on disk.

Two small scenarios run in one suite: one whose expectations hold and one that asks for
the impossible (a page 1 s after the fault, from a rule with a 30 s ``for``). The suite
must exit 1, print a line naming the failed expectation, and still write every report.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from actions.base import VERIFY_OUTCOMES
from agent.cli import app
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.simulate import RunSettings, run_simulations

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules" / "inference.yaml"


def _scenario(name: str, fires_within_s: int) -> str:
    return f"""\
name: {name}
duration_s: 300
rules: ["{RULES}"]
fleet:
  inference:
    - {{service: checkout, model: fraud-detector, rate_per_s: 10, latency_ms: 80}}
faults:
  - {{kind: latency_spike, where: {{service: checkout}}, start_s: 120, duration_s: 60, factor: 10}}
expect:
  - alert: {{name: InferenceHighP99Latency, labels: {{service: checkout}}, fires_within_s: {fires_within_s}, resolves_within_s: 120}}
  - no_event_lost: true
  - only_expected_alerts: {{}}
"""


def test_suite_reports_and_fails_on_an_impossible_expectation(broker: EmbeddedBroker, tmp_path: Path) -> None:
    good, impossible = tmp_path / "good.yaml", tmp_path / "impossible.yaml"
    good.write_text(_scenario("sim-it-good", 60))
    impossible.write_text(_scenario("sim-it-impossible", 1))
    out = tmp_path / "reports"
    printed = io.StringIO()

    status = run_simulations([good, impossible], RunSettings(out=out, bootstrap=broker.bootstrap), out=printed, progress=False)

    text = printed.getvalue()
    assert status == 1, text
    assert "PASS  sim-it-good" in text
    assert "FAIL  sim-it-impossible" in text
    assert "FAILED sim-it-impossible: alert InferenceHighP99Latency{service=checkout}: fired" in text
    assert "later than 1 s" in text
    for name in ("sim-it-good", "sim-it-impossible"):
        for report in ("results.json", "summary.md", "signal.png"):
            assert (out / name / report).stat().st_size > 0, f"{name}/{report} missing"
    results = json.loads((out / "sim-it-good" / "results.json").read_text())
    assert results["status"] == "PASS"
    alert = next(e for e in results["expectations"] if e["name"].startswith("alert "))
    assert 30 <= alert["measured"]["detect_s"] <= 60  # `for: 30s` after the p99 crosses 500 ms
    assert 60 <= alert["measured"]["resolve_s"] <= 120  # the 1 m window drains, then keep_firing_for 30 s
    assert results["events_produced"] > 2500
    assert (out / "summary.md").read_text().count("sim-it-") >= 2
    assert (out / "sim-it-good" / "signal.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_scenario_file_fails_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nduration_s: 60\nfleet: {gpu: [{node: n}]}\nexpect: [{no_such_thing: 1}]\n")
    result = CliRunner().invoke(app, ["simulate", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "bad.yaml: expect.0" in result.output


@pytest.mark.timeout(420)  # three paced scenarios (about 100 s) plus starting MLflow and Kubernetes
def test_remediation_scenarios_act_on_real_targets(
    broker: EmbeddedBroker, mlflow_server: Any, kube: Any, tmp_path: Path
) -> None:
    """With a real registry and API server the rollback and the scale are enforced, once each.

    ``bad_deploy``: the champion alias really moves from v8 to v7; ``mlflow_down``: MLflow
    answers 503 through the whole retry budget and the rollback is reported as failed;
    ``kube_api_errors``: the first two scale writes get 409 and 500, and the third lands.
    """
    files = [REPO / "simulations" / f for f in ("bad_deploy.yaml", "mlflow_down.yaml", "kube_api_errors.yaml")]
    out = tmp_path / "reports"
    printed = io.StringIO()
    settings = RunSettings(
        out=out, bootstrap=broker.bootstrap, mlflow_uri=mlflow_server.url, kubeconfig=str(kube.admin_kubeconfig)
    )

    status = run_simulations(files, settings, out=printed, progress=False)

    assert status == 0, printed.getvalue()
    decided = {  # the shipped rules' notify actions (dry-run) are not under test here
        name: [a for a in json.loads((out / name / "results.json").read_text())["actions"] if a["action"] != "notify"]
        for name in ("bad-deploy", "mlflow-down", "kube-api-errors")
    }
    actions = {name: [a for a in got if a["outcome"] not in VERIFY_OUTCOMES] for name, got in decided.items()}
    verdicts = {name: [a["outcome"] for a in got if a["outcome"] in VERIFY_OUTCOMES] for name, got in decided.items()}
    print("verifications:", verdicts)
    # the simulated v8 serves until its fault ends: the rollback is verified not_recovered; a failed one is not verified
    assert verdicts["bad-deploy"] == ["not_recovered"] and verdicts["mlflow-down"] == []
    assert [(a["action"], a["outcome"], a["mode"]) for a in actions["bad-deploy"]] == [("rollback", "executed", "enforce")]
    assert [a["outcome"] for a in actions["mlflow-down"]] == ["failed"]
    assert [a["outcome"] for a in actions["kube-api-errors"]] == ["executed"]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    # mlflow-down ran last on the registry: its rollback failed, so the alias stayed on v2
    assert client.get_registered_model("fraud-detector").aliases == {"champion": "2"}
    scale = kube.api_client()
    from kubernetes import client as k8s

    assert k8s.AppsV1Api(scale).read_namespaced_deployment("llm-server", "ml-serving").spec.replicas == 4
