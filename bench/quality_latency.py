"""NAB score of ``LatencyAnomaly`` with its defaults, next to a windowed-Gaussian baseline.

Every series in the NAB extract is streamed once, in order, through a fresh detector with
the default parameters (one configuration and one fixed threshold for every file; no
per-file tuning, no threshold chosen with hindsight). A row counts as a detection when
the verdict ``update`` returns for that row is active, exactly what the rule engine
sees. With the default ``bucket_s`` (60 s) each 5-minute row is its own bucket, which
closes, and is scored, when the next row arrives: the replay carries that one-row delay
rather than calling ``evaluate`` between rows. The baseline is NAB's windowed Gaussian
(mean and standard deviation of the last 6,400 values) at a fixed three-sigma threshold.
Scores come from ``bench/nab.py``.

    .venv/bin/python bench/quality_latency.py [--nab ../shared/data/nab] [--json out.json] [--quiet]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.nab import Series, load_corpus, load_profiles, score_corpus  # noqa: E402
from detectors.latency_anomaly import LatencyAnomaly  # noqa: E402

DEFAULT_NAB = ROOT / ".." / "shared" / "data" / "nab"


def detect_latency_anomaly(series: Series, params: dict | None = None, cost: dict | None = None) -> list[bool]:
    """Per-row verdicts of a fresh ``LatencyAnomaly`` (defaults unless ``params``).

    With ``cost``, appends to ``cost["block_us"]`` the mean update time of each block of
    100 rows and to ``cost["state_bytes"]`` the checkpoint size after the file.
    """
    det = LatencyAnomaly(**(params or {}))
    rows = list(zip(series.ts, series.values, strict=True))
    out: list[bool] = []
    for start in range(0, len(rows), 100):
        block = rows[start : start + 100]
        t0 = time.perf_counter()
        out.extend(det.update(x, ts).active for ts, x in block)
        if cost is not None:
            cost.setdefault("block_us", []).append((time.perf_counter() - t0) / len(block) * 1e6)
    if cost is not None:
        cost.setdefault("state_bytes", []).append(len(det.state()))
    return out


def detect_windowed_gaussian(series: Series, window: int = 6400, sigmas: float = 3.0) -> list[bool]:
    """NAB's windowed Gaussian at a fixed threshold: |x - mean| >= sigmas * sd of the last ``window`` values."""
    values: deque[float] = deque()
    total = total_sq = 0.0
    out = []
    for x in series.values:
        n = len(values)
        flagged = False
        if n >= 2:
            mean = total / n
            sd = math.sqrt(max(total_sq / n - mean * mean, 0.0))
            flagged = abs(x - mean) >= sigmas * sd if sd > 0 else x != mean
        out.append(flagged)
        values.append(x)
        total += x
        total_sq += x * x
        if len(values) > window:
            old = values.popleft()
            total -= old
            total_sq -= old * old
    return out


def run(corpus: Sequence[Series], detect: Callable[[Series], list[bool]], profiles: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    detections = {s.name: detect(s) for s in corpus}
    return score_corpus(detections, corpus, profiles), time.perf_counter() - start


def summary(result: dict) -> dict:
    return {
        profile: {
            "normalised": round(r["normalised"], 2), "score": round(r["score"], 3),
            "windows": r["windows"], "detected": r["tp"], "false_positives": r["fp"],
        }
        for profile, r in result.items()
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="the NAB extract (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="write the scores here")
    parser.add_argument("--quiet", action="store_true", help="only the profile totals")
    args = parser.parse_args()
    root = args.nab.resolve()
    if not (root / "labels" / "combined_windows.json").is_file():
        print(f"error: no NAB extract at {root} (expected labels/combined_windows.json); pass --nab PATH", file=sys.stderr)
        return 2
    corpus = load_corpus(root)
    profiles = load_profiles(root)
    cost: dict = {}
    detectors = {
        "latency_anomaly": lambda series: detect_latency_anomaly(series, cost=cost),
        "windowed_gaussian_3sd": detect_windowed_gaussian,
    }
    report: dict = {"nab": str(root), "files": len(corpus), "rows": sum(len(s.values) for s in corpus),
                    "defaults": LatencyAnomaly().params(), "detectors": {}}  # fmt: skip
    for name, detect in detectors.items():
        result, seconds = run(corpus, detect, profiles)
        standard = result["standard"]["files"]
        if not args.quiet:
            print(f"\n{name}: per-file standard score (windows detected / windows, false positives)")
            for s in corpus:
                f = standard[s.name]
                print(f"  {s.name:<58} {f.score:8.3f}  {f.tp}/{f.windows}  fp={f.fp}")
        totals = summary(result)
        print(f"{name:<24} " + "  ".join(f"{p}={t['normalised']:6.1f}" for p, t in totals.items())
              + f"  (detected {totals['standard']['detected']}/{totals['standard']['windows']},"
              f" fp={totals['standard']['false_positives']}, {seconds:.1f}s)")  # fmt: skip
        report["detectors"][name] = {
            "profiles": totals,
            "files": {s.name: {"standard": round(standard[s.name].score, 4), "detected": standard[s.name].tp,
                               "windows": standard[s.name].windows, "false_positives": standard[s.name].fp}
                      for s in corpus},
            "seconds": round(seconds, 2),
        }  # fmt: skip
    median_us = statistics.median(cost["block_us"])
    print(f"latency_anomaly cost: median {median_us:.2f} us per update (blocks of 100 rows), "
          f"state up to {max(cost['state_bytes'])} bytes per series")  # fmt: skip
    report["detectors"]["latency_anomaly"]["median_us_per_update"] = round(median_us, 2)
    report["detectors"]["latency_anomaly"]["max_state_bytes"] = max(cost["state_bytes"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
