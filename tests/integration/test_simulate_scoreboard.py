"""The remediation scoreboard end to end: a real agent acts in a small scenario; a wrong action fails the suite.

One scenario (a latency spike on checkout, answered by scaling checkout's Deployment)
runs twice: once where ``scoreboard.yaml`` declares checkout as the target to
remediate (the floors hold, exit 0), once where it declares search, so the same action
is on the wrong target (the floors fail, exit 1, and the summary says why).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agent.runtime.embedded_broker import EmbeddedBroker
from agent.simulate import RunSettings, run_simulations

pytestmark = pytest.mark.integration

RULES = """\
groups:
  - name: sb
    rules:
      - alert: CheckoutSlow
        source: inference
        by: [service]
        detector: {kind: threshold, field: latency_ms, agg: mean, window_s: 10s, op: ">", threshold: 400, min_count: 5}
        for: 5s
        keep_firing_for: 10s
        labels: {severity: page, namespace: ml-serving}
        annotations: {summary: "{{ $labels.service }} is slow"}
        actions:
          - {type: scale, deployment: "{{ $labels.service }}", step: 1, mode: enforce}
"""

SCENARIO = """\
name: sim-scoreboard
duration_s: 300
requires: [actions]
rules: ["rules/sb.yaml"]
fleet:
  inference:
    - {service: checkout, model: fraud-detector, rate_per_s: 10, latency_ms: 80}
    - {service: search, model: ranker, rate_per_s: 10, latency_ms: 40}
faults:
  - {kind: latency_spike, where: {service: checkout}, start_s: 120, duration_s: 60, factor: 10}
expect:
  - alert: {name: CheckoutSlow, labels: {service: checkout}, fires_within_s: 60, resolves_within_s: 120}
"""


def _suite(folder: Path, declared_target: str, bootstrap: str) -> tuple[int, str, dict[str, object], str]:
    (folder / "rules").mkdir(parents=True)
    (folder / "rules" / "sb.yaml").write_text(RULES)
    (folder / "scoreboard.yaml").write_text(
        "scenarios:\n  sim-scoreboard:\n    remediate:\n"
        f"      - {{fault: latency_spike, target: {declared_target}, action: scale}}\n"
    )
    (folder / "sim.yaml").write_text(SCENARIO)
    out, printed = folder / "reports", io.StringIO()
    status = run_simulations([folder], RunSettings(out=out, bootstrap=bootstrap), out=printed, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    return status, printed.getvalue(), summary["scoreboard"], (out / "summary.md").read_text()


def test_right_action_passes_and_wrong_target_fails(broker: EmbeddedBroker, tmp_path: Path) -> None:
    status, text, board, md = _suite(tmp_path / "right", "deployment/ml-serving/checkout", broker.bootstrap)
    assert status == 0, text
    assert (board["actions"], board["right"], board["wrong"], board["precision"], board["recall"]) == (1, 1, 0, 1.0, 1.0)
    row = board["scenarios"][0]  # type: ignore[index]
    with_s, without_s = row["recovery_with_s"][0], row["recovery_without_s"][0]  # type: ignore[index]
    assert with_s is not None and with_s > 0 and without_s >= 60.0  # a dry-run: the fault ran its scripted 60 s
    assert "## Remediation scoreboard" in md and "Floors held." in md

    status, text, board, md = _suite(tmp_path / "wrong", "deployment/ml-serving/search", broker.bootstrap)
    assert status == 1, text
    assert "PASS  sim-scoreboard" in text  # every expectation of the scenario held: only the scoreboard fails
    assert "FAILED scoreboard: remediation precision 0.00 is below the floor 1.00" in text
    assert "FAILED scoreboard: 1 wrong action(s)" in text and "scale deployment/ml-serving/checkout" in text
    assert (board["wrong"], board["precision"], board["recall"]) == (1, 0.0, 0.0)
    assert "**FAILED**" in md
