"""The simulated kinds refuse what the real ones would: rollback's stale-alert and allowed-names, approvals, HPAs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agent.policy_backtest import PolicySettings
from agent.policy_backtest.replay import replay
from agent.policy_backtest.sources import Recorded
from agent.policy_backtest.targets import load_targets
from agent.rules import load_rules

T0 = 1_700_000_000.0

ROLLBACK = """\
groups:
  - name: rb
    rules:
      - alert: ModelSlow
        source: inference
        by: [service, model, model_version]
        detector: {kind: threshold, field: latency_ms, agg: mean, window_s: 10s, op: ">", threshold: 500, min_count: 3}
        for: 5s
        keep_firing_for: 5s
        labels: {severity: page}
        annotations: {summary: slow}
        actions:
          - {type: rollback, alias: champion, allowed: {names: [ranker]}, mode: enforce}
"""

SCALE_APPROVE = """\
groups:
  - name: sc
    rules:
      - alert: LlmSlow
        source: inference
        by: [service]
        detector: {kind: threshold, field: latency_ms, agg: mean, window_s: 10s, op: ">", threshold: 500, min_count: 3}
        for: 5s
        labels: {severity: page}
        annotations: {summary: slow}
        actions:
          - {type: scale, namespace: ml-serving, deployment: "{{ $labels.service }}", step: 4, max_replicas: 8, max_step: 4, mode: approve, approval_timeout: 5m}
          - {type: scale, namespace: ml-serving, deployment: "{{ $labels.service }}", step: 4, max_replicas: 8, max_step: 4, mode: enforce}
"""


def _events(service: str, model: str, bursts: list[tuple[int, int]], duration: int = 1300) -> list[Recorded]:
    out = []
    for t in range(duration):
        slow = any(a <= t < b for a, b in bursts)
        event = {"type": "inference", "ts": T0 + t, "service": service, "model": model, "model_version": "3",
                 "latency_ms": 1000.0 if slow else 100.0, "status": "ok"}
        out.append(Recorded(json.dumps(event).encode(), -1, t))
    return out


def _rules(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rules([path])


def test_rollback_moves_the_alias_then_refuses_a_stale_alert(tmp_path: Path) -> None:
    targets = load_targets(None)  # model/ranker: versions 1-3, champion on 3
    events = _events("checkout", "ranker", [(300, 360), (1000, 1060)])
    run = asyncio.run(replay(_rules(tmp_path, ROLLBACK), events, targets, PolicySettings()))
    assert [(r.outcome, r.guard) for r in run.records] == [("executed", None), ("skipped", "stale-alert")]
    assert targets.registry["model/ranker"].holder == "2"
    assert run.targets.changes == [("model/ranker", "champion 3 -> 2")]


def test_rollback_of_a_model_the_rule_does_not_allow_is_refused(tmp_path: Path) -> None:
    run = asyncio.run(replay(_rules(tmp_path, ROLLBACK), _events("checkout", "other", [(300, 360)]), load_targets(None)))
    assert [(r.outcome, r.guard) for r in run.records] == [("skipped", "allowed-names")]
    assert run.targets.changes == []


def test_approvals_wait_and_expire_and_an_hpa_takes_the_floor(tmp_path: Path) -> None:
    seed = tmp_path / "targets.yaml"
    seed.write_text("deployments:\n  ml-serving/llm: {replicas: 2, hpa: {min: 2, max: 5}}\n", encoding="utf-8")
    targets = load_targets(seed)
    run = asyncio.run(replay(_rules(tmp_path, SCALE_APPROVE), _events("llm", "m", [(300, 360), (900, 960)]), targets))
    outcomes = [(r.action_index, r.outcome, r.guard) for r in run.records]
    assert outcomes[:2] == [(0, "pending-approval", "approval"), (1, "executed", None)]
    assert (0, "expired", "approval") in outcomes  # nobody approves in a backtest: it expires after 5 m of event time
    # the HPA caps the floor at its maxReplicas (5), and the second incident finds it there
    assert targets.deployments["ml-serving/llm"].hpa_min == 5
    assert (1, "skipped", "blast-radius") in outcomes
