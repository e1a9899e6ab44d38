"""Drift detection quality: ``Drift`` vs plain ``river.drift.ADWIN`` on river's streams.

    .venv/bin/python bench/quality_drift.py [--seeds 10] [--clean-events 1000000] [--json out.json]

Every stream is one value per event at 1 event/s of event time, so ``Drift``'s default
budget (one false alarm per 30 days) is one per 2.59 million events, about 0.39 per
million. Both detectors see the same values; ``Drift`` runs with its defaults (reference:
the first 5000 events), ADWIN with its defaults (``delta=0.002``).

* synthetic, known change point at event 6000, 5000 events after it, ``--seeds`` runs:
  - numeric feature: ``x0`` of ``RandomRBF(n_features=4, n_centroids=5)``, the model
    seed changing at the change point (abrupt: two streams chained, since
    ``ConceptDriftStream(width=1)`` fails in river 0.26.1; gradual: ``ConceptDriftStream``
    with ``width=1000``, its onset counted from ``position - width / 2``);
  - predictions-like values (labels 0/1): ``SEA`` variants (abrupt and gradual),
    ``Agrawal`` classification functions and ``STAGGER`` functions (abrupt), the pair
    changing with the seed (shifts of 0.2 to 1.4 sd; a few pairs do not change the label
    mix and count as missed by both).
  - for scale, plain Gaussian streams (``random.gauss``, not river): mean shifts of 0.25,
    0.5, 1 and 2 sd, and a 1.5x wider spread.
  Reported per detector: runs detected within the 5000 events, mean and median delay
  (events, detected runs), the mean with misses counted as 5000, false alarms before
  the change point, and the runs where it detected strictly first.
* clean streams, ``--clean-events`` each, of every generator without a change: false
  alarms per million events (quiet-to-active transitions for ``Drift``, detections for
  ADWIN), together with the pre-change false alarms of the runs above.
* real series with annotated change points, ``river.drift.datasets`` (TCPD): one column
  per dataset, one event per row (1 s apart); change points are the union over the
  annotators (points within 5 rows merged). Both detectors adapt after a detection
  (``Drift(relearn=True)``); the series have 105 to 8195 rows, so ``Drift`` runs with
  short references and loose budgets, in two set-ups: 30 rows and one false alarm per
  10,000 events, and 60 rows and one per 100,000. A detection is the first alarm at or
  after a change point and before the next; every other alarm counts as false.

Also reported: ``Drift``'s and ``CategoryDrift``'s per-update time (median over blocks of
100 updates, microseconds) and their serialised state (bytes) after 20,000 updates.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from river import drift as river_drift  # noqa: E402
from river.datasets import synth  # noqa: E402
from river.drift import datasets as tcpd  # noqa: E402

from detectors.category_drift import CategoryDrift  # noqa: E402
from detectors.drift import Drift  # noqa: E402

CHANGE, AFTER, WIDTH = 6000, 5000, 1000
Stream = Callable[[int], Any]  # seed -> a river dataset


def rbf(model: int, sample: int) -> Any:
    return synth.RandomRBF(seed_model=model, seed_sample=sample, n_features=4, n_centroids=5)


def x0(stream: Any) -> Iterator[float]:
    return (float(x[0]) for x, _ in stream)


def label(stream: Any) -> Iterator[float]:
    return (float(y) for _, y in stream)


SEA_PAIRS = ((0, 1), (1, 2), (2, 3), (3, 0))
AGRAWAL_PAIRS = ((0, 1), (2, 4), (4, 6), (6, 0))
STAGGER_PAIRS = ((0, 1), (1, 2), (2, 0))

# name -> (before(seed), after(seed), reader, gradual)
SCENARIOS: dict[str, tuple[Stream, Stream, Callable[[Any], Iterator[float]], bool]] = {
    "rbf-x0 abrupt": (lambda s: rbf(100 + 2 * s, s), lambda s: rbf(101 + 2 * s, s + 500), x0, False),
    "rbf-x0 gradual": (lambda s: rbf(100 + 2 * s, s), lambda s: rbf(101 + 2 * s, s + 500), x0, True),
    "sea-label abrupt": (lambda s: synth.SEA(variant=SEA_PAIRS[s % 4][0], seed=s),
                         lambda s: synth.SEA(variant=SEA_PAIRS[s % 4][1], seed=s + 500), label, False),
    "sea-label gradual": (lambda s: synth.SEA(variant=SEA_PAIRS[s % 4][0], seed=s),
                          lambda s: synth.SEA(variant=SEA_PAIRS[s % 4][1], seed=s + 500), label, True),
    "agrawal-label abrupt": (lambda s: synth.Agrawal(classification_function=AGRAWAL_PAIRS[s % 4][0], seed=s),
                             lambda s: synth.Agrawal(classification_function=AGRAWAL_PAIRS[s % 4][1], seed=s + 500),
                             label, False),
    "stagger-label abrupt": (lambda s: synth.STAGGER(classification_function=STAGGER_PAIRS[s % 3][0], seed=s),
                             lambda s: synth.STAGGER(classification_function=STAGGER_PAIRS[s % 3][1], seed=s + 500),
                             label, False),
}
GAUSS = {"gauss mean+0.25sd": (0.25, 1.0), "gauss mean+0.5sd": (0.5, 1.0), "gauss mean+1sd": (1.0, 1.0),
         "gauss mean+2sd": (2.0, 1.0), "gauss sd*1.5": (0.0, 1.5)}
CLEAN: dict[str, tuple[Stream, Callable[[Any], Iterator[float]]]] = {
    "rbf-x0": (lambda s: rbf(900 + s, s), x0),
    "sea-label": (lambda s: synth.SEA(variant=s % 4, seed=s), label),
    "agrawal-label": (lambda s: synth.Agrawal(classification_function=2 * (s % 4), seed=s), label),
    "stagger-label": (lambda s: synth.STAGGER(classification_function=s % 3, seed=s), label),
}
REAL = {
    "AirlinePassengers": lambda row: row[1],
    "Apple": lambda row: row[1]["Close"],
    "Bitcoin": lambda row: row[1],
    "BrentSpotPrice": lambda row: row[1],
    "Occupancy": lambda row: row[1]["V1"],
    "RunLog": lambda row: row[1]["Pace"],
    "UKCoalEmploy": lambda row: row[1],
}


def values(name: str, seed: int) -> list[float]:
    if name in GAUSS:
        mean, sd = GAUSS[name]
        rng = random.Random(seed)
        return [rng.gauss(0.0, 1.0) for _ in range(CHANGE)] + [rng.gauss(mean, sd) for _ in range(AFTER)]
    before, after, read, gradual = SCENARIOS[name]
    if gradual:
        stream = synth.ConceptDriftStream(stream=before(seed), drift_stream=after(seed), position=CHANGE, width=WIDTH, seed=seed)
        return list(itertools.islice(read(stream), CHANGE + AFTER))
    return list(itertools.islice(read(before(seed)), CHANGE)) + list(itertools.islice(read(after(seed)), AFTER))


def alarms_drift(xs: list[float], det: Drift) -> list[int]:
    """Indices where the verdict turns active."""
    out, was = [], False
    for i, x in enumerate(xs):
        active = det.update(x, float(i)).active
        if active and not was:
            out.append(i)
        was = active
    return out


def alarms_adwin(xs: list[float]) -> list[int]:
    adwin = river_drift.ADWIN()
    out = []
    for i, x in enumerate(xs):
        adwin.update(x)
        if adwin.drift_detected:
            out.append(i)
    return out


def synthetic(seeds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in (*SCENARIOS, *GAUSS):
        gradual = name in SCENARIOS and SCENARIOS[name][3]
        onset = CHANGE - WIDTH // 2 if gradual else CHANGE
        horizon = AFTER + (CHANGE - onset)
        delays: dict[str, list[int]] = {"drift": [], "adwin": []}
        false = {"drift": 0, "adwin": 0}
        for seed in range(seeds):
            xs = values(name, seed)
            for det, hits in (("drift", alarms_drift(xs, Drift())), ("adwin", alarms_adwin(xs))):
                false[det] += sum(1 for i in hits if i < onset)
                delays[det].append(next((i - onset for i in hits if i >= onset), horizon))
        rows = {}
        for det, other in (("drift", "adwin"), ("adwin", "drift")):
            found = [d for d in delays[det] if d < horizon]
            rows[det] = {
                "detected": len(found), "runs": seeds,
                "mean_delay": statistics.fmean(found) if found else None,
                "median_delay": statistics.median(found) if found else None,
                "mean_delay_censored": statistics.fmean(delays[det]),
                "false_alarms_before": false[det], "events_before": seeds * onset,
                "first": sum(1 for a, b in zip(delays[det], delays[other], strict=True) if a < b),
                "delays": delays[det],
            }
        results[name] = rows
    return results


def clean(events: int) -> dict[str, Any]:
    results = {}
    for name, (make, read) in CLEAN.items():
        row = {}
        xs = list(itertools.islice(read(make(0)), events))
        row["drift"] = len(alarms_drift(xs, Drift()))
        row["adwin"] = len(alarms_adwin(xs))
        row["events"] = len(xs)
        results[name] = row
    return results


def change_points(ds: Any, n: int) -> list[int]:
    points = sorted({p for marks in ds.annotations.values() for p in marks if 0 < p < n})
    merged: list[int] = []
    for p in points:
        if not merged or p - merged[-1] > 5:
            merged.append(p)
    return merged


def score_real(hits: list[int], cps: list[int], n: int) -> dict[str, Any]:
    delays, false = [], 0
    bounds = cps + [n]
    used = set()
    for k, cp in enumerate(cps):
        inside = [i for i in hits if cp <= i < bounds[k + 1]]
        if inside:
            delays.append(inside[0] - cp)
            used.add(inside[0])
    false = sum(1 for i in hits if i not in used)
    return {"detected": len(delays), "change_points": len(cps), "mean_delay": statistics.fmean(delays) if delays else None,
            "delay_sum": sum(delays), "false_alarms": false, "events": n}


REAL_SETUPS = {"drift-30": (30, 10_000), "drift-60": (60, 100_000)}  # reference rows, events per false alarm


def real() -> dict[str, Any]:
    results = {}
    for name, read in REAL.items():
        ds = getattr(tcpd, name)()
        xs = [float(read(row)) for row in ds]
        cps = change_points(ds, len(xs))
        row = {}
        for setup, (size, events) in REAL_SETUPS.items():
            det = Drift(reference_size=size, false_alarm_days=events / 86_400, relearn=True)
            row[setup] = score_real(alarms_drift(xs, det), cps, len(xs))
        row["adwin"] = score_real(alarms_adwin(xs), cps, len(xs))
        results[name] = row
    return results


def cost() -> dict[str, Any]:
    rng = random.Random(0)
    numbers = [rng.gauss(0.0, 1.0) for _ in range(20_000)]
    cats = rng.choices([f"c{k}" for k in range(30)], weights=[1 / k for k in range(1, 31)], k=20_000)
    out = {}
    for name, det, xs in (("drift", Drift(), numbers), ("category_drift", CategoryDrift(), cats)):
        per = []
        for i in range(0, len(xs), 100):
            t0 = time.perf_counter()
            for j in range(i, i + 100):
                det.update(xs[j], float(j))
            per.append((time.perf_counter() - t0) / 100 * 1e6)
        tested = per[50:]  # after the 5000-event reference
        out[name] = {"median_us": round(statistics.median(tested), 2), "learning_median_us": round(statistics.median(per[:50]), 2),
                     "state_bytes": len(det.state())}
    return out


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.0f}" if isinstance(v, float) else str(v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--clean-events", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict[str, Any] = {}

    out["synthetic"] = syn = synthetic(args.seeds)
    print(f"synthetic streams (change at event {CHANGE}, {args.seeds} runs each, delays in events)")
    print(f"{'scenario':<22} {'detector':<8} {'found':>6} {'mean':>6} {'median':>6} {'censored':>8} {'FA before':>9} {'first':>6}")
    for name, rows in syn.items():
        for det, r in rows.items():
            print(f"{name:<22} {det:<8} {r['detected']:>3}/{r['runs']:<2} {_fmt(r['mean_delay']):>6} {_fmt(r['median_delay']):>6} "
                  f"{_fmt(r['mean_delay_censored']):>8} {r['false_alarms_before']:>9} {r['first']:>6}")

    out["clean"] = cl = clean(args.clean_events)
    before = {d: sum(r[d]["false_alarms_before"] for r in syn.values()) for d in ("drift", "adwin")}
    events_before = sum(r["drift"]["events_before"] for r in syn.values())
    print(f"\nfalse alarms on clean streams ({args.clean_events} events each) and before the change points")
    print(f"{'stream':<22} {'drift':>8} {'adwin':>8}")
    for name, r in cl.items():
        print(f"{name:<22} {r['drift']:>8} {r['adwin']:>8}")
    total = sum(r["events"] for r in cl.values()) + events_before
    per_m = {d: (sum(r[d] for r in cl.values()) + before[d]) / total * 1e6 for d in ("drift", "adwin")}
    out["false_alarms_per_million"] = {**per_m, "events": total}
    print(f"{'all, per million':<22} {per_m['drift']:>8.2f} {per_m['adwin']:>8.2f}   ({total} events)")

    out["real"] = rl = real()
    print("\nreal series (river.drift.datasets; relearning Drift: 30-row reference and 1 false alarm per 10k events,")
    print("60 rows and 1 per 100k): change points found / mean delay (rows) / false alarms")
    print(f"{'dataset':<18} {'rows':>5} {'cps':>4} " + " ".join(f"{k:>16}" for k in (*REAL_SETUPS, "adwin")))
    totals = {k: [0, 0, 0, 0] for k in (*REAL_SETUPS, "adwin")}
    for name, r in rl.items():
        cells = []
        for k in totals:
            d = r[k]
            totals[k][0] += d["detected"]
            totals[k][1] += d["false_alarms"]
            totals[k][2] += d["delay_sum"]
            totals[k][3] += d["change_points"]
            cells.append(f"{d['detected']:>4}/{_fmt(d['mean_delay']):>4}/{d['false_alarms']:<5}")
        print(f"{name:<18} {r['adwin']['events']:>5} {r['adwin']['change_points']:>4} " + " ".join(f"{c:>16}" for c in cells))
    cells = [f"{t[0]:>4}/{(t[2] / t[0] if t[0] else 0):>4.0f}/{t[1]:<5}" for t in totals.values()]
    print(f"{'all':<18} {'':>5} {next(iter(totals.values()))[3]:>4} " + " ".join(f"{c:>16}" for c in cells))
    out["real_totals"] = {k: {"detected": t[0], "false_alarms": t[1], "mean_delay": t[2] / t[0] if t[0] else None, "change_points": t[3]}
                          for k, t in totals.items()}

    out["cost"] = co = cost()
    print("\ncost after 20,000 updates (targets: median < 20 us, state < 8 KB)")
    for name, r in co.items():
        print(f"{name:<16} median {r['median_us']:.2f} us (learning {r['learning_median_us']:.2f} us), state {r['state_bytes']} B")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
