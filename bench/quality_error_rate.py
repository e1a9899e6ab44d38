"""Error-rate detection quality on a synthetic request stream, vs a single-window threshold.

    .venv/bin/python bench/quality_error_rate.py [--rps 10] [--clean-hours 48] [--seed 7] [--json out.json]

The stream is one service at ``--rps`` requests per second (evenly spaced), each failing
independently with the current error ratio; the SLO is 99.9 % (an error budget of 0.1 %),
and "Nx" below is N times that budget. Every scenario is seeded.

* clean: ``--clean-hours`` at a steady 0.5x (0.05 % errors), plus transient blips (on
  average one every 12 hours, seeded: 60 s at 10 % errors, as a bad pod or a deploy
  gives), each burning about 0.23 % of a 30-day budget, which a 5 m window sees as
  2 % errors. Reported: alert episodes (quiet to active) and the share of time active;
* incidents: 6 h at 0.5x (so the longest paging window is full), then a step to 14x,
  30x, 100x or 1000x (everything fails) that lasts until detected (at most 8 h).
  Reported: seconds from the step to the first active verdict;
* slow degradation: 6 h at 0.5x, then a linear ramp to 3x over 2 hours, held up to 24 h.

Detectors, on the same streams:

* ``slo``: ``ErrorRate()``, the workbook's paging pairs (14.4x over 1 h and 5 m, 6x over
  6 h and 30 m);
* ``slo+ticket``: the same plus the workbook's ticket pair (1x over 3 d and 6 h);
* ``anomaly``: ``ErrorRate(slo_target=None)``, no SLO, its own baseline;
* ``threshold``: the baseline, one window: error ratio over 5 m above 14.4x the budget
  (1.44 %) with at least 20 requests (``Threshold(agg="mean", window_s=300)``).

Also reported: per-update time (median over blocks of 100 updates, microseconds) and the
largest serialised state (bytes) of each ``ErrorRate`` set-up after the clean stream.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from detectors.base import Detector  # noqa: E402
from detectors.error_rate import ErrorRate  # noqa: E402
from detectors.threshold import Threshold  # noqa: E402

BUDGET = 0.001
STEADY_X = 0.5
BLIP_EVERY_S, BLIP_S, BLIP_RATIO = 12 * 3600.0, 60.0, 0.1
WARM_S = 6 * 3600.0
INCIDENTS_X = (14.0, 30.0, 100.0, 1000.0)
INCIDENT_MAX_S = 8 * 3600.0
RAMP_TO_X, RAMP_S, RAMP_MAX_S = 3.0, 2 * 3600.0, 24 * 3600.0

DETECTORS: dict[str, Callable[[], Detector]] = {
    "slo": ErrorRate,
    "slo+ticket": lambda: ErrorRate(windows=((3600.0, 300.0, 14.4), (21600.0, 1800.0, 6.0), (259200.0, 21600.0, 1.0))),
    "anomaly": lambda: ErrorRate(slo_target=None),
    "threshold": lambda: Threshold(op=">", threshold=14.4 * BUDGET, agg="mean", window_s=300.0, min_count=20),
}


def stream(rps: float, seconds: float, ratio: Callable[[float], float], seed: int) -> Iterator[tuple[float, float]]:
    """(ts, 1.0 if the request failed) for evenly spaced requests."""
    rng = random.Random(seed)
    for i in range(int(seconds * rps)):
        ts = i / rps
        yield ts, 1.0 if rng.random() < ratio(ts) else 0.0


def blips(seconds: float, seed: int) -> list[float]:
    rng = random.Random(seed + 1)
    out, t = [], rng.expovariate(1.0 / BLIP_EVERY_S)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(1.0 / BLIP_EVERY_S)
    return out


def clean_ratio(starts: list[float]) -> Callable[[float], float]:
    def ratio(ts: float) -> float:
        for s in starts:
            if s <= ts < s + BLIP_S:
                return BLIP_RATIO
        return STEADY_X * BUDGET

    return ratio


def first_active(det: Detector, events: Iterable[tuple[float, float]], after: float) -> float | None:
    for ts, x in events:
        if det.update(x, ts).active and ts >= after:
            return ts - after
    return None


def clean_run(rps: float, hours: float, seed: int) -> dict[str, Any]:
    seconds = hours * 3600.0
    starts = blips(seconds, seed)
    events = list(stream(rps, seconds, clean_ratio(starts), seed))
    out: dict[str, Any] = {"hours": hours, "blips": len(starts), "detectors": {}}
    for name, make in DETECTORS.items():
        det = make()
        count, active_s, prev, prev_ts = 0, 0.0, False, 0.0
        blocks, block_t0 = [], time.perf_counter()
        for i, (ts, x) in enumerate(events):
            active = det.update(x, ts).active
            if prev:
                active_s += ts - prev_ts
            count += active and not prev
            prev, prev_ts = active, ts
            if i % 100 == 99:
                now = time.perf_counter()
                blocks.append((now - block_t0) / 100 * 1e6)
                block_t0 = now
        out["detectors"][name] = {
            "false_alarms": count,
            "active_share": round(active_s / seconds, 6),
            "median_us": round(statistics.median(blocks), 2),
            "state_bytes": len(det.state()),
        }
    return out


def incident_runs(rps: float, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in INCIDENTS_X:
        level = min(1.0, k * BUDGET)

        def ratio(ts: float, level: float = level) -> float:
            return level if ts >= WARM_S else STEADY_X * BUDGET

        events = list(stream(rps, WARM_S + INCIDENT_MAX_S, ratio, seed))
        out[f"{k:g}x"] = {name: _round(first_active(make(), events, WARM_S)) for name, make in DETECTORS.items()}
    return out


def ramp_runs(rps: float, seed: int) -> dict[str, Any]:
    def ratio(ts: float) -> float:
        if ts < WARM_S:
            return STEADY_X * BUDGET
        x = STEADY_X + (RAMP_TO_X - STEADY_X) * min(1.0, (ts - WARM_S) / RAMP_S)
        return x * BUDGET

    events = list(stream(rps, WARM_S + RAMP_MAX_S, ratio, seed))
    return {name: _round(first_active(make(), events, WARM_S)) for name, make in DETECTORS.items()}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def show(results: dict[str, Any]) -> None:
    clean = results["clean"]
    print(f"{results['rps']:g} requests/s, SLO 99.9 %, steady 0.5x; clean: {clean['hours']:g} h with {clean['blips']} blips")
    names = list(DETECTORS)
    print(f"{'':<28}" + "".join(f"{n:>14}" for n in names))
    row = "".join(f"{clean['detectors'][n]['false_alarms']:>14}" for n in names)
    print(f"{'false alarms (clean)':<28}{row}")
    row = "".join(f"{clean['detectors'][n]['active_share'] * 100:>13.3f}%" for n in names)
    print(f"{'time active (clean)':<28}{row}")
    for label, delays in results["incidents"].items():
        print(f"{'delay, step to ' + label:<28}" + "".join(f"{_cell(delays[n]):>14}" for n in names))
    print(f"{'delay, ramp 0.5x->3x in 2h':<28}" + "".join(f"{_cell(results['ramp'][n]):>14}" for n in names))
    print(f"{'median us/update (clean)':<28}" + "".join(f"{clean['detectors'][n]['median_us']:>14}" for n in names))
    print(f"{'state bytes (end of clean)':<28}" + "".join(f"{clean['detectors'][n]['state_bytes']:>14}" for n in names))


def _cell(v: float | None) -> str:
    if v is None:
        return "missed"
    return f"{v:g}s" if v < 600 else f"{v / 60:.1f}m"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=10.0)
    parser.add_argument("--clean-hours", type=float, default=48.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(None if argv is None else list(argv))
    if args.rps <= 0 or args.clean_hours <= 0:
        parser.error("--rps and --clean-hours must be positive")
    results = {
        "rps": args.rps,
        "clean": clean_run(args.rps, args.clean_hours, args.seed),
        "incidents": incident_runs(args.rps, args.seed),
        "ramp": ramp_runs(args.rps, args.seed),
    }
    show(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
