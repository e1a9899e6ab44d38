"""A small recorded history and policy for the policy-backtest tests.

Four latency bursts, one event per second per service: checkout at 300-360 s and
500-560 s (both labelled incidents), checkout again at 900-960 s and search at
1200-1260 s (not labelled). The policy scales the service's Deployment by 2 (cooldown
5 m, at most 4 replicas) and also asks for a Deployment in ``payments``, a namespace
the allow-list leaves out. So, with the default 2 replicas:

- burst 1: checkout 2 -> 4 executed; the payments entry refused by ``namespace``;
- burst 2: refused by ``cooldown`` (200 s after the last scale);
- burst 3: refused by ``blast-radius`` (checkout is at ``max_replicas``);
- burst 4: search 2 -> 4 executed, outside every labelled incident (a wrong action).
"""

from __future__ import annotations

import json
from pathlib import Path

T0 = 1_700_000_000.0
BURSTS = {"checkout": [(300, 360), (500, 560), (900, 960)], "search": [(1200, 1260)]}
DURATION_S = 1400

POLICY = """\
groups:
  - name: policy
    rules:
      - alert: HighLatency
        source: inference
        by: [service]
        detector:
          kind: threshold
          field: latency_ms
          agg: mean
          window_s: 10s
          op: ">"
          threshold: 500
          min_count: 3
        for: 5s
        keep_firing_for: 5s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} is slow"
        actions:
          - type: scale
            namespace: ml-serving
            deployment: "{{ $labels.service }}"
            step: 2
            max_replicas: 4
            max_step: 2
            cooldown: 5m
            mode: enforce
          - type: scale
            namespace: payments
            deployment: "{{ $labels.service }}"
            step: 1
            mode: enforce
"""

LABELS_CSV = f"""start,end,service
{T0 + 290:.0f},{T0 + 380:.0f},checkout
{T0 + 490:.0f},{T0 + 580:.0f},checkout
"""


def slow(service: str, t: int) -> bool:
    return any(a <= t < b for a, b in BURSTS[service])


def events() -> list[dict[str, object]]:
    """The recorded events, in time order."""
    out: list[dict[str, object]] = []
    for t in range(DURATION_S):
        for service in sorted(BURSTS):
            latency = 1000.0 if slow(service, t) else 100.0
            out.append(
                {"type": "inference", "ts": T0 + t, "service": service, "model": "ranker", "model_version": "7",
                 "latency_ms": latency, "status": "ok"}
            )
    return out


def write_inputs(folder: Path) -> tuple[Path, Path, Path]:
    """(policy file, events JSONL, labels CSV) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    policy, jsonl, labels = folder / "policy.yaml", folder / "events.jsonl", folder / "labels.csv"
    policy.write_text(POLICY, encoding="utf-8")
    jsonl.write_text("".join(json.dumps(e) + "\n" for e in events()), encoding="utf-8")
    labels.write_text(LABELS_CSV, encoding="utf-8")
    return policy, jsonl, labels
