"""The simulated fleet: every service and GPU of a scenario as one event stream in event time.

Each source is a seeded generator of ``(offset_s, event)`` pairs; :func:`fleet_events`
merges them in offset order and applies the scenario's application faults. The same
scenario and seed give the same events, so a failed run can be replayed exactly.

>>> from simulations.scenario import Fleet
>>> fleet = Fleet.model_validate({"gpu": [{"node": "n1", "gpus": 2, "interval_s": 30}]})
>>> [(round(o), e["gpu"]) for o, e in fleet_events(fleet, [], start_ts=0.0, duration_s=60, seed=1)]
[(0, '0'), (0, '1'), (30, '0'), (30, '1')]
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .faults import APP_FAULTS, FaultBase
from .rag import rag_events
from .scenario import CategoricalFeature, Fleet, GpuNode, InferenceService, LlmService, NumericFeature
from .trace import load_trace

__all__ = ["fleet_events"]

Timed = tuple[float, dict[str, Any]]


def _inference(svc: InferenceService, start_ts: float, duration_s: float, rng: random.Random) -> Iterator[Timed]:
    offset = rng.random() / svc.rate_per_s
    while offset < duration_s:
        features: dict[str, Any] = {}
        for name, spec in svc.features.items():
            if isinstance(spec, CategoricalFeature):
                features[name] = rng.choices(list(spec.categories), list(spec.categories.values()))[0]
            elif isinstance(spec, NumericFeature) and spec.dist == "normal":
                features[name] = round(rng.gauss(spec.mean, spec.sd), 4)
            else:
                features[name] = round(rng.lognormvariate(spec.mu, spec.sigma), 2)
        yield offset, {
            "type": "inference",
            "ts": round(start_ts + offset, 3),
            "service": svc.service,
            "model": svc.model,
            "model_version": svc.model_version,
            "latency_ms": round(max(1.0, rng.gauss(svc.latency_ms, svc.latency_jitter_ms)), 2),
            "status": "error" if rng.random() < svc.error_ratio else "ok",
            "features": features,
            "prediction": round(min(1.0, max(0.0, rng.gauss(svc.prediction_mean, svc.prediction_sd))), 4),
        }
        offset += rng.expovariate(svc.rate_per_s)


def _llm_event(svc: LlmService, ts: float, tenant: str, prompt: int, completion: int, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "llm",
        "ts": round(ts, 3),
        "service": svc.service,
        "model": svc.model,
        "prompt_version": svc.prompt_version,
        "tenant": tenant,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "latency_ms": round(svc.latency_ms * (0.3 + completion / max(1.0, svc.completion_tokens) * 0.7), 1),
        "status": "error" if rng.random() < svc.error_ratio else "ok",
    }


def _llm(svc: LlmService, start_ts: float, duration_s: float, rng: random.Random, base: Path) -> Iterator[Timed]:
    tenants, weights = list(svc.tenants), list(svc.tenants.values())
    if svc.trace is not None:
        path = Path(svc.trace.path)
        for offset, prompt, completion in load_trace(path if path.is_absolute() else base / path, svc.trace.speedup, duration_s):
            yield offset, _llm_event(svc, start_ts + offset, rng.choices(tenants, weights)[0], prompt, completion, rng)
        return
    offset = rng.random() / svc.rate_per_s
    while offset < duration_s:
        prompt = max(1, int(rng.lognormvariate(math.log(svc.prompt_tokens), 0.5)))
        completion = max(1, int(rng.lognormvariate(math.log(svc.completion_tokens), 0.4)))
        yield offset, _llm_event(svc, start_ts + offset, rng.choices(tenants, weights)[0], prompt, completion, rng)
        offset += rng.expovariate(svc.rate_per_s)


def _gpu(node: GpuNode, start_ts: float, duration_s: float, rng: random.Random) -> Iterator[Timed]:
    total = int(node.mem_total_gb * 1024**3)
    steps = int(math.ceil(duration_s / node.interval_s))
    for step in range(steps):
        offset = step * node.interval_s
        for gpu in range(node.gpus):
            yield offset, {
                "type": "gpu",
                "ts": round(start_ts + offset, 3),
                "node": node.node,
                "gpu": str(gpu),
                "pod": node.pod,
                "util_pct": round(min(100.0, max(0.0, rng.gauss(node.util_pct, 5.0))), 1),
                "mem_used_bytes": int(total * min(0.99, max(0.0, rng.gauss(node.mem_used_ratio, 0.003)))),
                "mem_total_bytes": total,
                "temp_c": round(rng.gauss(node.temp_c, 1.0), 1),
                "power_w": round(max(0.0, rng.gauss(node.power_w, 20.0)), 1),
                "xid_errors": 0,
            }


def fleet_events(
    fleet: Fleet,
    faults: Sequence[FaultBase],
    *,
    start_ts: float,
    duration_s: float,
    seed: int = 0,
    base: Path = Path("."),
) -> Iterator[Timed]:
    """Every source's events, merged in offset order, with the application faults applied.

    ``base`` is the folder relative trace paths are read from (the scenario's folder).
    """
    sources: list[Iterator[Timed]] = []
    for i, svc in enumerate(fleet.inference):
        sources.append(_inference(svc, start_ts, duration_s, random.Random(f"{seed}/inference/{i}")))
    for i, llm in enumerate(fleet.llm):
        sources.append(_llm(llm, start_ts, duration_s, random.Random(f"{seed}/llm/{i}"), base))
    for i, node in enumerate(fleet.gpu):
        sources.append(_gpu(node, start_ts, duration_s, random.Random(f"{seed}/gpu/{i}")))
    for i, rag in enumerate(fleet.rag):
        sources.extend(rag_events(rag, start_ts, duration_s, f"{seed}/rag/{i}"))
    app_faults = [f for f in faults if getattr(f, "kind", "") in APP_FAULTS]
    rng = random.Random(f"{seed}/faults")
    for offset, event in heapq.merge(*sources, key=lambda pair: pair[0]):
        out = [event]
        for fault in app_faults:
            if fault.applies(event, offset):
                out = [e for one in out for e in fault.transform(one, offset, rng)]
        for e in out:
            yield offset, e
