"""One rule per detector kind, with a clean warm-up, a fault and a recovery to feed it.

Shared by the end-to-end test (through the real broker and Alertmanager) and by its
fast twin that runs the same events through ``Pipeline`` alone, so a failure of the
slow test can be told apart: a detector or stream problem fails both, a transport
problem only the slow one. Streams are generated from a fixed seed; event time runs
one event per step (usually a second) from ``t0``, so a case covering minutes of event
time is published in milliseconds.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CASES", "Case", "Phases", "rules_yaml"]

Phases = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]  # warm-up, fault, recovery


@dataclass(frozen=True)
class Case:
    """A rule of one detector kind and the events that make it fire and then resolve.

    ``detector`` is the rule's ``detector:`` block (YAML, indented by the caller);
    ``annotations`` its templates; ``expect`` regular expressions (``{owner}`` is
    filled in) the firing page's annotations must match: the value and the evidence
    in words.
    """

    kind: str
    source: str
    detector: str
    annotations: dict[str, str]
    expect: tuple[str, ...]
    make: Callable[[str, float, random.Random], Phases]
    for_s: int = 0
    keep_firing_for_s: int = 2

    @property
    def owner_field(self) -> str:
        return "node" if self.source == "gpu" else "service"

    def patterns(self, owner: str) -> list[re.Pattern[str]]:
        return [re.compile(p.replace("{owner}", re.escape(owner))) for p in self.expect]

    def events(self, owner: str, t0: float, seed: int = 7) -> Phases:
        """(clean warm-up, fault, recovery) events of ``owner``, the first at ``t0``."""
        return self.make(owner, t0, random.Random(seed))


def _inference(service: str, ts: float, latency_ms: float = 40.0, **more: Any) -> dict[str, Any]:
    return {"type": "inference", "ts": ts, "service": service, "model": "ranker", "model_version": "7",
            "latency_ms": latency_ms, "status": "ok", **more}  # fmt: skip


def _llm(service: str, ts: float, completion_tokens: int) -> dict[str, Any]:
    return {"type": "llm", "ts": ts, "service": service, "model": "gpt-4o", "prompt_version": "3",
            "tenant": "acme", "prompt_tokens": 400, "completion_tokens": completion_tokens,
            "latency_ms": 900.0, "status": "ok"}  # fmt: skip


def _gpu(node: str, ts: float, util_pct: float) -> dict[str, Any]:
    return {"type": "gpu", "ts": ts, "node": node, "gpu": "0", "util_pct": util_pct,
            "mem_used_bytes": 40 << 30, "mem_total_bytes": 80 << 30, "temp_c": 60.0, "power_w": 300.0}  # fmt: skip


def _timed(values: list[Any], t0: float, step: float, make: Callable[[float, Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """One event per ``step`` seconds from ``t0``."""
    return [make(t0 + i * step, v) for i, v in enumerate(values)]


def _split(events: list[dict[str, Any]], n_warm: int, n_recovery: int) -> Phases:
    return events[:n_warm], events[n_warm:-n_recovery], events[-n_recovery:]


def _threshold(owner: str, t0: float, rng: random.Random) -> Phases:
    lat = [rng.gauss(40, 5) for _ in range(30)] + [rng.gauss(900, 30) for _ in range(8)] + [rng.gauss(40, 5) for _ in range(20)]
    return _split(_timed(lat, t0, 1.0, lambda ts, v: _inference(owner, ts, v)), 30, 20)


def _latency_anomaly(owner: str, t0: float, rng: random.Random) -> Phases:
    lat = [rng.gauss(120, 8) for _ in range(150)] + [rng.gauss(480, 20) for _ in range(3)] + [rng.gauss(120, 8) for _ in range(15)]
    return _split(_timed(lat, t0, 1.0, lambda ts, v: _inference(owner, ts, v)), 150, 15)


def _error_rate(owner: str, t0: float, rng: random.Random) -> Phases:
    # 2 requests a second: clean for 2 minutes, half failing for 20 s, clean again
    failing = [rng.random() < 0.002 for _ in range(240)] + [rng.random() < 0.5 for _ in range(40)] + [False] * 60
    return _split(_timed(failing, t0, 0.5, lambda ts, v: _inference(owner, ts, status="error" if v else "ok")), 240, 60)


def _token_spend(owner: str, t0: float, rng: random.Random) -> Phases:
    # 2 requests a second of ~300 completion tokens for 3 minutes, 6x longer answers for 15 s
    tokens = [rng.lognormvariate(5.7, 0.3) for _ in range(360)] + [6 * rng.lognormvariate(5.7, 0.3) for _ in range(30)]
    tokens += [rng.lognormvariate(5.7, 0.3) for _ in range(60)]
    return _split(_timed([round(t) for t in tokens], t0, 0.5, lambda ts, v: _llm(owner, ts, v)), 360, 60)


def _drift(owner: str, t0: float, rng: random.Random) -> Phases:
    amounts = [rng.gauss(100, 10) for _ in range(300)] + [rng.gauss(160, 10) for _ in range(40)] + [rng.gauss(100, 10) for _ in range(120)]
    return _split(_timed(amounts, t0, 1.0, lambda ts, v: _inference(owner, ts, features={"amount": round(v, 2)})), 300, 120)


def _category_drift(owner: str, t0: float, rng: random.Random) -> Phases:
    before, after = [6, 3, 1], [1, 3, 6]
    countries = rng.choices(["DE", "US", "FR"], before, k=200) + rng.choices(["DE", "US", "FR"], after, k=60)
    countries += rng.choices(["DE", "US", "FR"], before, k=120)
    return _split(_timed(countries, t0, 1.0, lambda ts, v: _inference(owner, ts, features={"country": v})), 200, 120)


def _retrieval(service: str, ts: float, embedding: list[float]) -> dict[str, Any]:
    return {"type": "retrieval", "ts": ts, "service": service, "index": "docs", "index_version": "4",
            "latency_ms": 9.0, "k": 5, "hits": 5, "top_score": 0.8, "mean_score": 0.6, "status": "ok",
            "embedding": embedding}  # fmt: skip


def _embedding_drift(owner: str, t0: float, rng: random.Random) -> Phases:
    # four query topics as 16-d clusters: three in the reference, the fourth a new population
    centres = [[rng.gauss(0, 1) for _ in range(16)] for _ in range(4)]

    def query(topic: int) -> list[float]:
        return [round(c + rng.gauss(0, 0.3), 4) for c in centres[topic]]

    topics = [rng.randrange(3) for _ in range(150)] + [3] * 30 + [rng.randrange(3) for _ in range(700)]
    return _split(_timed([query(t) for t in topics], t0, 0.25, lambda ts, v: _retrieval(owner, ts, v)), 150, 700)


def _score_drop(owner: str, t0: float, rng: random.Random) -> Phases:
    # a rating a second: 80 % thumbs up, then a bad version's run of thumbs down, then good again
    scores = [1 if rng.random() < 0.8 else -1 for _ in range(40)] + [-1] * 25 + [1] * 60

    def rating(ts: float, score: int) -> dict[str, Any]:
        return {"type": "feedback", "ts": ts, "service": owner, "request_id": f"r{ts:.0f}", "prompt_version": "9", "score": score}

    return _split(_timed(scores, t0, 1.0, rating), 40, 60)


def _gpu_pressure(owner: str, t0: float, rng: random.Random) -> Phases:
    util = [rng.uniform(40, 70) for _ in range(30)] + [rng.uniform(95, 100) for _ in range(20)] + [rng.uniform(30, 50) for _ in range(10)]
    return _split(_timed(util, t0, 1.0, lambda ts, v: _gpu(owner, ts, round(v, 1))), 30, 10)


CASES: tuple[Case, ...] = (
    Case(
        "threshold", "inference",
        "kind: threshold\nfield: latency_ms\nagg: mean\nwindow_s: 5s\nop: \">\"\nthreshold: 500\nmin_count: 3",
        {"summary": 'mean latency of {{ $labels.service }} is {{ $value | printf "%.0f" }} ms',
         "limit": "above {{ $evidence.threshold }} ms over {{ $evidence.window_s | humanizeDuration }}"},
        (r"summary=mean latency of {owner} is [5-9]\d\d ms", r"limit=above 500 ms over 5s"),
        _threshold, for_s=2,
    ),
    Case(
        "latency_anomaly", "inference",
        "kind: latency_anomaly\nfield: latency_ms\nbucket_s: 0\nwarmup_s: 0\nrefractory_s: 5",
        {"summary": '{{ $labels.service }} latency {{ $value | printf "%.0f" }} ms is a {{ $evidence.test }}',
         "baseline": 'baseline {{ $evidence.baseline | printf "%.0f" }} ms, z {{ $evidence.z | printf "%.0f" }}'},
        (r"summary={owner} latency [3-5]\d\d ms is a spike", r"baseline=baseline 1[1-3]\d ms, z \d+"),
        _latency_anomaly,
    ),
    Case(
        "error_rate", "inference",
        "kind: error_rate\nfield: status\nequals: error\nslo_target: 0.99\nwindows: [[1m, 10s, 10]]\nmin_errors: 5",
        {"summary": "{{ $labels.service }} fails {{ $value | humanizePercentage }} of requests",
         "burn": 'burning the error budget {{ $evidence.burn_rate | printf "%.0f" }}x too fast (budget {{ $evidence.baseline | humanizePercentage }})'},
        (r"summary={owner} fails [1-6]\d(\.\d+)?% of requests", r"burn=burning the error budget \d+x too fast \(budget 1%\)"),
        _error_rate,
    ),
    Case(
        "token_spend", "llm",
        "kind: token_spend\nfield: completion_tokens\nspike_window_s: 10s\nbaseline_half_life_s: 10m\nmin_baseline_s: 60s",
        {"summary": '{{ $labels.service }} wrote {{ $evidence.ratio | printf "%.1f" }}x its usual tokens ({{ $evidence.spike }} test)',
         "baseline": '{{ $value | humanize }} tokens in {{ $evidence.window_s | humanizeDuration }} against a baseline of {{ $evidence.baseline | printf "%.0f" }}'},
        (r"summary={owner} wrote \d+\.\dx its usual tokens \((rate|size) test\)", r"baseline=[\d.]+k tokens in 10s against a baseline of \d+"),
        _token_spend,
    ),
    Case(
        "drift", "inference",
        "kind: drift\nfield: features.amount\nreference_size: 200\nmean_shifts_sd: [1, 2]\nscale_ratio: null\nwindow_size: 20",
        {"summary": "features.amount of {{ $labels.service }} drifted: {{ $evidence.change }}",
         "means": 'last {{ $evidence.window_size }} average {{ $evidence.current_mean | printf "%.0f" }} against {{ $evidence.reference_mean | printf "%.0f" }} in {{ $evidence.reference_n }} reference events'},
        (r"summary=features.amount of {owner} drifted: mean up [12] sd", r"means=last 20 average 1[1-6]\d against 10\d in 200 reference events"),
        _drift,
    ),
    Case(
        "category_drift", "inference",
        "kind: category_drift\nfield: features.country\nreference_size: 100\nwindow_size: 50",
        {"summary": "the country mix of {{ $labels.service }} moved {{ $value | humanizePercentage }}",
         "mix": "now {{ $evidence.current_top }}; reference {{ $evidence.reference_top }}"},
        (r"summary=the country mix of {owner} moved [1-9]\d(\.\d+)?%", r"mix=now FR \d+%.*; reference DE [5-7]\d%"),
        _category_drift,
    ),
    Case(
        "embedding_drift", "retrieval",
        "kind: embedding_drift\nfield: embedding\nreference_size: 100\nprojections: 4\nneighbourhoods: 3\nwindow_size: 20",
        {"summary": "queries of {{ $labels.service }} moved {{ $evidence.moved_sd | printf \"%.1f\" }} sd: {{ $evidence.statistic }}",
         "mass": "outside {{ $evidence.outside_share | humanizePercentage }}; lost {{ $evidence.lost_mass }}"},
        (r"summary=queries of {owner} moved \d+\.\d sd: (vectors outside every reference neighbourhood|projection \d mean (up|down) [\d.]+ sd)",
         r"mass=outside [1-9]\d(\.\d+)?%; lost n\d \d+% -> \d+%"),
        _embedding_drift,
    ),
    Case(
        "score_drop", "feedback",
        "kind: score_drop\nfield: score\nprior_mean: 0.5\nfalse_alarm_days: 1",
        {"summary": "users rate {{ $labels.service }} {{ $evidence.recent_mean | printf \"%.2f\" }} against {{ $evidence.baseline_mean | printf \"%.2f\" }}",
         "run": "{{ $evidence.run_events }} ratings, test {{ $evidence.cusum | printf \"%.1f\" }} > {{ $evidence.threshold | printf \"%.1f\" }}"},
        (r"summary=users rate {owner} -[01]\.\d\d against 0\.\d\d", r"run=\d+ ratings, test \d+\.\d > \d+\.\d"),
        _score_drop,
    ),
    Case(
        "gpu_pressure", "gpu",
        "kind: gpu_pressure\nfield: util_pct\nsignal: saturation\nsaturation_pct: 90\nsustain_s: 10s",
        {"summary": "GPU {{ $labels.gpu }} on {{ $labels.node }} saturated for {{ $evidence.held_s | humanizeDuration }}",
         "level": 'utilisation {{ $value | printf "%.0f" }}% at or above {{ $evidence.limit }}%'},
        (r"summary=GPU 0 on {owner} saturated for 1\ds", r"level=utilisation (9\d|100)% at or above 90%"),
        _gpu_pressure,
    ),
)


def rules_yaml(named: list[tuple[Case, str, str]]) -> str:
    """A rule file with one rule per ``(case, alertname, owner)``, each matching only its owner."""
    lines = ["groups:", "  - name: e2e-kinds", "    rules:"]
    for case, alertname, owner in named:
        lines += [
            f"      - alert: {alertname}",
            f"        source: {case.source}",
            f"        match: '{{{case.owner_field}=\"{owner}\"}}'",
            f"        by: [{'node, gpu' if case.source == 'gpu' else 'service'}]",
            "        detector:",
            *("          " + line for line in case.detector.splitlines()),
            f"        for: {case.for_s}s",
            f"        keep_firing_for: {case.keep_firing_for_s}s",
            "        labels:",
            "          severity: page",
            f"          kind: {case.kind}",
            "        annotations:",
            *(f"          {name}: {json.dumps(text)}" for name, text in case.annotations.items()),
        ]
    return "\n".join(lines) + "\n"
