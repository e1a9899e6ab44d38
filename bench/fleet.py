"""The synthetic fleet shared by the benchmarks, producing, RSS and percentiles.

Not a test helper: only ``bench/*.py`` import it (run them from the repository root,
e.g. ``.venv/bin/python bench/throughput.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

SERVICES: tuple[str, ...] = tuple(f"svc-{i:02d}" for i in range(50))
MODELS: tuple[str, ...] = tuple(f"model-{j:02d}" for j in range(20))
SERIES: tuple[tuple[str, str], ...] = tuple((s, m) for s in SERVICES for m in MODELS)  # 1,000


def model_version(service_index: int, model_index: int) -> str:
    """A tenth of the series run the canary version ``v2``."""
    return "v2" if (service_index + model_index) % 10 == 0 else "v1"


def fleet_events(n: int, *, seed: int = 7, end_ts: float | None = None) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) inference events over the 1,000 series, ~200 bytes each.

    Round robin over the series, one event per series per second of event time (the
    fleet emits 1,000 events per event-second), ending at ``end_ts`` (default: now), so
    the windows of the rules hold what they would hold in production at that rate.
    Healthy traffic: log-normal latency around 40 ms (capped at 400 ms), 0.5 % errors.
    """
    rng = random.Random(seed)
    per_s = len(SERIES)
    end = time.time() if end_ts is None else end_ts
    start = end - n / per_s
    out: list[tuple[bytes, bytes]] = []
    versions = {(s, m): model_version(i, j) for i, s in enumerate(SERVICES) for j, m in enumerate(MODELS)}
    for i in range(n):
        service, model = SERIES[i % per_s]
        event = {
            "type": "inference",
            "ts": round(start + i / per_s, 3),
            "service": service,
            "model": model,
            "model_version": versions[(service, model)],
            "latency_ms": round(min(400.0, rng.lognormvariate(math.log(40.0), 0.5)), 2),
            "status": "error" if rng.random() < 0.005 else "ok",
            "features": {"amount": round(rng.uniform(1.0, 5000.0), 2), "age": float(rng.randint(18, 90))},
            "prediction": round(rng.random(), 4),
        }
        out.append((service.encode(), json.dumps(event, separators=(",", ":")).encode()))
    return out


async def produce_all(bootstrap: str, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> int:
    """Send every (key, value) and wait until all are acknowledged; returns the count."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=5, max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        # the record timestamp is the event's time, as a live producer's CreateTime is (the
        # agent trusts event time only within max_event_skew_s of it)
        pending = [await producer.send(topic, value=value, key=key, timestamp_ms=_event_ms(value)) for key, value in messages]
        await asyncio.gather(*pending)
        return len(pending)
    finally:
        await producer.stop()


def _event_ms(value: bytes) -> int | None:
    ts = json.loads(value).get("ts")
    return int(ts * 1000) if isinstance(ts, (int, float)) else None


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), as the threshold detector computes pNN."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]
