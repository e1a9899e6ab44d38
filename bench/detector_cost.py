"""Per-update time and state size of every registered detector kind.

Each detector runs its own contract stream (``_unit_test_stream``, a clean half then a
fault) repeated to 20,000 updates with its contract parameters, then its defaults where
they build. Reported: the median and p99 of per-update wall time in microseconds (timed
in blocks of 100 updates to keep timer overhead out), and the serialised state size in
bytes after the run (what a checkpoint would store per series). Targets from issue 3:
median under 20 us and state under 8 KB.

    .venv/bin/python bench/detector_cost.py [--updates N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.registry import DETECTORS  # noqa: E402

BLOCK = 100


def measure(cls, params: dict, updates: int) -> dict:
    base = cls._unit_test_stream(0)
    span = base[-1][0] - base[0][0] + 1.0
    stream = [(ts + k * span, x) for k in range(updates // len(base) + 1) for ts, x in base][:updates]
    det = cls(**params)
    per_update = []
    for i in range(0, len(stream), BLOCK):
        block = stream[i : i + BLOCK]
        t0 = time.perf_counter()
        for ts, x in block:
            det.update(x, ts)
        per_update.append((time.perf_counter() - t0) / len(block) * 1e6)
    per_update.sort()
    return {
        "median_us": round(statistics.median(per_update), 2),
        "p99_us": round(per_update[int(len(per_update) * 0.99) - 1], 2),
        "state_bytes": len(det.state()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    print(f"{'kind':<18} {'params':<10} {'median us':>10} {'p99 us':>8} {'state B':>8}  verdict")
    for kind in sorted(DETECTORS):
        cls = DETECTORS[kind]
        for label, params in (("contract", cls._unit_test_params()), ("defaults", {})):
            try:
                row = measure(cls, params, args.updates)
            except Exception as exc:  # noqa: BLE001 - a kind whose defaults do not fit the stream
                print(f"{kind:<18} {label:<10} skipped: {exc}")
                continue
            ok = row["median_us"] < 20 and row["state_bytes"] < 8192
            results[f"{kind}/{label}"] = row
            print(f"{kind:<18} {label:<10} {row['median_us']:>10.2f} {row['p99_us']:>8.2f} {row['state_bytes']:>8}  {'ok' if ok else 'OVER TARGET'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
