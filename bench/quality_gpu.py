"""Quality of the gpu_pressure detector: stragglers in real traces, memory-leak forecasts.

(a) Alibaba PAI GPU trace v2020, mini-batch times of distributed training workers
    (../shared/data/alibaba_gpu_v2020_minibatch). Each worker's ``batch_time_norm``
    series goes through ``signal="slowdown"`` with default parameters, event time =
    iteration number x ``--step-s``. job_1 has one straggler (worker 6) that appears in
    the middle of training; its onset is read off the data (the first iteration at
    which the worker takes 1.5 times the median of its own earlier iterations) and the
    detection delay is reported in iterations. job_2 is stable, so every flag there is
    false. job_3 and job_4 (several stragglers, fluctuating) are shown for information.
(b) Synthetic memory leaks: ``mem_used_ratio`` from 0.35 to 1.0, linear or in steps,
    with Gaussian noise, one sample every ``--interval-s``: how long before the frame
    buffer is full the forecast warns (lead time), and false warnings on flat noisy
    memory and on single steps (a model loading, then staying).
(c) Cost: median and p99 per-update time and state bytes per signal (targets from
    issue 3: median under 20 us, state under 8 KB).

    .venv/bin/python bench/quality_gpu.py [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.gpu_pressure import GpuPressure  # noqa: E402

DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "alibaba_gpu_v2020_minibatch"
ONSET_RATIO = 1.5


# --- (a) stragglers --------------------------------------------------------------------
def load_job(data: Path, job: int) -> dict[int, list[tuple[int, float]]]:
    workers: dict[int, list[tuple[int, float]]] = defaultdict(list)
    with (data / f"job_{job}_norm.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            workers[int(row["worker"])].append((int(row["time"]), float(row["batch_time_norm"])))
    return {w: sorted(s) for w, s in sorted(workers.items())}


def onset(series: list[tuple[int, float]], min_history: int = 10) -> int | None:
    """First iteration taking ONSET_RATIO times the median of the worker's earlier ones."""
    for i in range(min_history, len(series)):
        if series[i][1] > ONSET_RATIO * statistics.median(x for _, x in series[:i]):
            return series[i][0]
    return None


def flags(series: list[tuple[int, float]], step_s: float) -> list[int]:
    det = GpuPressure(signal="slowdown")
    return [it for it, x in series if det.update(x, ts=it * step_s).active]


def stragglers(data: Path, step_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for job in (1, 2, 3, 4):
        workers = load_job(data, job)
        flagged = {w: f for w, s in workers.items() if (f := flags(s, step_s))}
        row: dict[str, Any] = {
            "workers": len(workers),
            "iterations": max(len(s) for s in workers.values()),
            "flagged": {str(w): {"first": f[0], "last": f[-1], "samples": len(f)} for w, f in flagged.items()},
        }
        if job == 1:
            series = workers[6]
            start = onset(series)
            first = flagged.get(6, [None])[0]
            iters = [it for it, _ in series]
            row["straggler"] = {
                "worker": 6,
                "onset_iteration": start,
                "first_flag_iteration": first,
                "delay_iterations": None if first is None or start is None else first - start,
                "delay_samples": None if first is None or start is None else iters.index(first) - iters.index(start),
                "flagged_before_onset": [it for it in flagged.get(6, []) if start is not None and it < start],
                "other_workers_flagged": sorted(w for w in flagged if w != 6),
            }
        out[f"job_{job}"] = row
    return out


# --- (b) memory leaks ------------------------------------------------------------------
def memory_run(level, duration_s: float, interval_s: float, sd: float, seed: int, **params: Any) -> dict[str, Any]:
    """Feed ``level(t)`` plus noise; the first warning, and the warning episodes."""
    rng = random.Random(seed)
    det = GpuPressure(signal="memory", **params)
    first: tuple[float, str, float] | None = None
    full_at = None
    active_samples, episodes, longest, run_start = 0, 0, 0.0, None
    t = 0.0
    while t <= duration_s:
        true = level(t)
        if true >= 1.0:
            full_at = t
            break
        x = min(1.0, max(0.0, true + rng.gauss(0.0, sd)))
        score = det.update(x, ts=t)
        if score.active:
            active_samples += 1
            if run_start is None:
                run_start, episodes = t, episodes + 1
            longest = max(longest, t - run_start + interval_s)
            if first is None:
                first = (t, score.evidence["reason"], score.evidence["tte_s"])
        else:
            run_start = None
        t += interval_s
    return {
        "warned_at_s": None if first is None else first[0],
        "reason": None if first is None else first[1],
        "forecast_tte_s": None if first is None or not math.isfinite(first[2]) else round(first[2]),
        "full_at_s": full_at,
        "lead_s": None if first is None or full_at is None else full_at - first[0],
        "active_samples": active_samples,
        "episodes": episodes,
        "longest_episode_s": longest,
    }


def leak_level(start: float, full_s: float, step_s: float, base: float = 0.35):
    def level(t: float) -> float:
        grown = max(0.0, t - start)
        if step_s:
            grown = math.floor(grown / step_s) * step_s
        return base + (1.0 - base) * grown / (full_s - start) if t < full_s else 1.0

    return level


#: (shape, step period s, growth s, detector parameters, counts towards PASS)
LEAKS: list[tuple[str, float, float, dict[str, Any], bool]] = (
    [("linear", 0.0, d, {}, True) for d in (1200, 3600, 10800, 21600)]
    + [("steps every 5m", 300.0, d, {}, True) for d in (1800, 3600, 10800, 21600)]
    # steps further apart than half the window look like single steps to the default
    # 20m window (a limit, shown); a window of twice the step period sees them
    + [("steps every 15m", 900.0, d, {}, False) for d in (3600, 10800, 21600)]
    + [("steps every 15m, window_s=30m", 900.0, d, {"window_s": 1800.0}, True) for d in (3600, 10800, 21600)]
)


def leaks(interval_s: float, seeds: int) -> dict[str, Any]:
    start = 1200.0  # 20 minutes of flat memory first
    out: dict[str, Any] = {}
    for shape, step_s, growth_s, params, counts in LEAKS:
        for sd in (0.002, 0.01):
            level = leak_level(start, start + growth_s, step_s)
            runs = [memory_run(level, start + growth_s + 60, interval_s, sd, seed, **params) for seed in range(seeds)]
            leads = [r["lead_s"] for r in runs]
            out[f"{shape}, full after {growth_s / 3600:.3g} h, noise sd {sd}"] = {
                "counts": counts,
                "warned_before_full": sum(lead is not None and lead > 0 for lead in leads),
                "runs": len(runs),
                "lead_s_min": min((x for x in leads if x is not None), default=None),
                "lead_s_median": statistics.median(x for x in leads if x is not None) if any(x is not None for x in leads) else None,
                "first_reason": runs[0]["reason"],
            }
    return out


def false_warnings(interval_s: float, seeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    day = 24 * 3600.0
    for level in (0.3, 0.6, 0.85, 0.9):
        for sd in (0.005, 0.01, 0.02):
            runs = [memory_run(lambda t, v=level: v, day, interval_s, sd, 100 + s) for s in range(seeds)]
            out[f"flat {level}, noise sd {sd}, 24 h"] = _false_row(runs, interval_s)
    for a, b in ((0.2, 0.6), (0.35, 0.85), (0.3, 0.92)):
        runs = [memory_run(lambda t, a=a, b=b: a if t < 3600 else b, 6 * 3600.0, interval_s, 0.005, 200 + s) for s in range(seeds)]
        out[f"one step {a} -> {b} (model load), 6 h"] = _false_row(runs, interval_s)
    return out


def _false_row(runs: list[dict[str, Any]], interval_s: float) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "runs_with_warning": sum(r["episodes"] > 0 for r in runs),
        "active_samples": sum(r["active_samples"] for r in runs),
        "episodes": sum(r["episodes"] for r in runs),
        "episodes_over_2m": 0 if not runs else sum(r["longest_episode_s"] > 120 for r in runs),
        "longest_episode_s": max(r["longest_episode_s"] for r in runs),
    }


# --- (c) cost --------------------------------------------------------------------------
def cost(updates: int = 20_000, block: int = 100) -> dict[str, Any]:
    rng = random.Random(0)
    streams = {
        "saturation": ({"signal": "saturation"}, [min(100.0, rng.gauss(92.0, 4.0)) for _ in range(updates)]),
        "thermal": ({"signal": "thermal"}, [rng.gauss(84.0, 2.0) for _ in range(updates)]),
        "power": ({"signal": "power", "power_cap_w": 400.0}, [rng.gauss(395.0, 6.0) for _ in range(updates)]),
        "memory": ({"signal": "memory"}, [0.3 + 0.00005 * (i % 10_000) + rng.gauss(0.0, 0.005) for i in range(updates)]),
        "xid": ({"signal": "xid"}, [79.0 if i % 5000 == 0 else 0.0 for i in range(updates)]),
        "slowdown": ({"signal": "slowdown"}, [rng.gauss(400.0 if (i // 1000) % 4 else 600.0, 10.0) for i in range(updates)]),
    }
    out: dict[str, Any] = {}
    for signal, (params, xs) in streams.items():
        det = GpuPressure(**params)
        per_update = []
        for i in range(0, updates, block):
            t0 = time.perf_counter()
            for j in range(i, min(updates, i + block)):
                det.update(xs[j], float(j))
            per_update.append((time.perf_counter() - t0) / block * 1e6)
        per_update.sort()
        sizer = GpuPressure(**params)
        biggest = 0
        for j, x in enumerate(xs):
            sizer.update(x, float(j))
            if j % 500 == 0:
                biggest = max(biggest, len(sizer.state()))
        out[signal] = {
            "median_us": round(statistics.median(per_update), 2),
            "p99_us": round(per_update[int(len(per_update) * 0.99) - 1], 2),
            "state_bytes_max": max(biggest, len(det.state())),
        }
    return out


# --- report ----------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of job_{1..4}_norm.csv")
    parser.add_argument("--step-s", type=float, default=1.0, help="nominal seconds per training iteration")
    parser.add_argument("--interval-s", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds per synthetic case")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    ok = True

    data = args.data.resolve()
    if not (data / "job_1_norm.csv").is_file():
        print(f"(a) skipped: no Alibaba mini-batch data at {data} (expected job_1_norm.csv ...; pass --data DIR)")
    else:
        print(f"(a) stragglers: slowdown signal, defaults, {data}")
        res = stragglers(data, args.step_s)
        results["stragglers"] = res
        for job, row in res.items():
            flagged = ", ".join(f"w{w} {f['first']}-{f['last']} ({f['samples']} samples)" for w, f in row["flagged"].items()) or "none"
            print(f"  {job}: {row['workers']} workers x {row['iterations']} samples; flagged: {flagged}")
        s = res["job_1"]["straggler"]
        found = s["first_flag_iteration"] is not None and not s["flagged_before_onset"] and not s["other_workers_flagged"]
        false_job2 = sum(f["samples"] for f in res["job_2"]["flagged"].values())
        print(
            f"  job_1 worker 6: onset at iteration {s['onset_iteration']}, first flag at {s['first_flag_iteration']}: "
            f"delay {s['delay_iterations']} iterations ({s['delay_samples']} samples); "
            f"other workers flagged: {s['other_workers_flagged'] or 'none'} -> {'FOUND' if found else 'MISSED'}"
        )
        print(f"  job_2 (stable): {false_job2} false flags on {len(res['job_2']['flagged'])} workers")
        ok &= found and false_job2 == 0

    print(f"\n(b) memory leaks: signal memory, defaults (window 20m, horizon 30m), a sample every {args.interval_s:g} s")
    res_leaks = leaks(args.interval_s, args.seeds)
    results["leaks"] = res_leaks
    print(f"  {'case':<62} {'warned':>7} {'lead min':>9} {'lead med':>9}  first reason")
    for name, row in res_leaks.items():
        lead_min = "-" if row["lead_s_min"] is None else f"{row['lead_s_min'] / 60:.1f}m"
        lead_med = "-" if row["lead_s_median"] is None else f"{row['lead_s_median'] / 60:.1f}m"
        note = "" if row["counts"] else "  (limit, not counted)"
        print(f"  {name:<62} {row['warned_before_full']:>3}/{row['runs']:<3} {lead_min:>9} {lead_med:>9}  {row['first_reason']}{note}")
        ok &= row["warned_before_full"] == row["runs"] or not row["counts"]
    res_false = false_warnings(args.interval_s, args.seeds)
    results["false_warnings"] = res_false
    print(f"\n  false warnings ({args.seeds} runs each): {'case':<40} {'runs warned':>11} {'samples':>8} {'episodes':>9} {'> 2m':>5}")
    for name, row in res_false.items():
        print(f"  {'':<34}{name:<40} {row['runs_with_warning']:>7}/{row['runs']:<3} {row['active_samples']:>8} {row['episodes']:>9} {row['episodes_over_2m']:>5}")

    print("\n(c) cost per signal (20,000 updates, timed in blocks of 100)")
    res_cost = cost()
    results["cost"] = res_cost
    for signal, row in res_cost.items():
        within = row["median_us"] < 20 and row["state_bytes_max"] < 8192
        print(f"  {signal:<11} median {row['median_us']:>6.2f} us  p99 {row['p99_us']:>6.2f} us  state {row['state_bytes_max']:>5} B  {'ok' if within else 'OVER TARGET'}")
        ok &= within

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"\n{'PASS' if ok else 'FAIL'}: straggler found, no false flags on job_2, every leak warned before full, cost within targets")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
