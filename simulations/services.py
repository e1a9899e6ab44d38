"""A seeded fleet of simulated inference services, and faults to inject into it.

Events are generated in event time (a start timestamp plus offsets), so a scenario of
ten minutes can be replayed in a second and gives the same events for the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Fault", "SimulatedService", "generate"]

FAULT_KINDS = ("latency_spike", "error_burst")


@dataclass(frozen=True)
class SimulatedService:
    """One model behind one service, with its normal latency and error ratio."""

    service: str
    model: str
    model_version: str = "1"
    rate_per_s: float = 10.0
    latency_ms: float = 80.0
    latency_jitter_ms: float = 20.0
    error_ratio: float = 0.005


@dataclass(frozen=True)
class Fault:
    """What goes wrong, for which service, from ``start_s`` for ``duration_s`` seconds.

    ``latency_spike`` multiplies latency by ``magnitude``; ``error_burst`` sets the error
    ratio to ``magnitude``.
    """

    kind: str
    service: str
    start_s: float
    duration_s: float
    magnitude: float

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if self.duration_s <= 0 or self.start_s < 0:
            raise ValueError("a fault needs start_s >= 0 and duration_s > 0")

    def active(self, offset_s: float) -> bool:
        return self.start_s <= offset_s < self.start_s + self.duration_s


def generate(
    services: Sequence[SimulatedService],
    faults: Sequence[Fault],
    *,
    start_ts: float,
    duration_s: float,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Inference events of every service, in event-time order, faults applied."""
    rng = random.Random(seed)
    clocks = [(1.0 / s.rate_per_s * rng.random(), i) for i, s in enumerate(services)]
    while True:
        offset, i = min(clocks)
        if offset >= duration_s:
            return
        svc = services[i]
        latency = max(1.0, rng.gauss(svc.latency_ms, svc.latency_jitter_ms))
        error_ratio = svc.error_ratio
        for f in faults:
            if f.service == svc.service and f.active(offset):
                if f.kind == "latency_spike":
                    latency *= f.magnitude
                else:
                    error_ratio = f.magnitude
        status = "error" if rng.random() < error_ratio else "ok"
        yield {
            "type": "inference",
            "ts": round(start_ts + offset, 3),
            "service": svc.service,
            "model": svc.model,
            "model_version": svc.model_version,
            "latency_ms": round(latency, 2),
            "status": status,
            "features": {"amount": round(rng.lognormvariate(3.0, 1.0), 2)},
            "prediction": round(rng.random(), 4),
        }
        clocks[clocks.index((offset, i))] = (offset + rng.expovariate(svc.rate_per_s), i)
