"""LLM-path detection quality: ``embedding_drift`` vs a per-dimension KS baseline on
generated query embeddings, and the shipped safety, retrieval and feedback rules' detectors
vs static thresholds.

    .venv/bin/python bench/quality_embedding_drift.py [--seeds 5] [--weeks 1] [--json out.json]

Embeddings (no model download): queries are generated text, embedded by a deterministic
hashing embedder. Twelve topics each own a 200-word vocabulary; a query is 5-12 words,
each from its topic's vocabulary (Zipf-ranked, 65 %) or from a 400-word shared one
(question words, fillers, 35 %). The embedder hashes unigrams and bigrams (blake2b, signed)
into 384 dimensions, sums and L2-normalises them, as feature-hashing sentence embedders
do: queries of one topic have cosine similarity ~0.3-0.5, of two topics ~0.1, with a
long tail. A stream is one query per 10 s of event time (360 an hour), topics drawn from
a mixture; the reference is the first 1000 queries (2.8 h).

Scenarios, change at query 2000, 3000 queries after it, ``--seeds`` runs each:
* ``new-topic-30``: 30 % of queries from a topic the reference never saw;
* ``new-topic-10``: 10 % from an unseen topic;
* ``mix-shift``: the largest topic (30 %) falls to 5 %, its mass spread over the others;
* ``gradual``: an unseen topic ramping from 0 to 40 % over 2000 queries (delay counted
  from the ramp's start).
Clean streams of ``--weeks`` weeks (60,480 queries a week) count false alarms per week.
Every scenario runs twice: on the hashed vectors (sparse: a topic's frequent words own a
few coordinates, the case most favourable to per-coordinate tests) and on the same
vectors under a fixed random rotation (``dense``: each topic spread over all
coordinates, as transformer encoders produce; distances and clusters unchanged).

Baseline (``ks``): every 500 queries, a two-sample Kolmogorov-Smirnov test per dimension
of the 384 between the reference and the last 500 (scipy), drift when the smallest
p-value is under ``alpha / 384`` (Bonferroni): ``ks-0.05`` at alpha = 0.05 (Evidently's
per-column default), and ``ks-budget`` at the alpha that spends the same budget as
``embedding_drift`` (one false alarm per 30 days: 518 windows, alpha = 1/518). Its delay
is counted to the end of the window that detected.

Rules (each detector exactly as shipped in rules/llm.yaml and rules/rag.yaml), against a
static threshold on a windowed mean; delays in minutes of event time, false alarms per
week on a clean stream of ``--weeks`` weeks:
* safety: 1 answer a second, 0.3 % flagged, a prompt change to 8 % flagged
  (LlmSafetyFlagBurn's error_rate vs flagged share over 5 min > 2 %);
* retrieval: 1 lookup a second, 0.5 % empty, an index version returning nothing for 100 %
  or 20 % of queries (RetrievalEmptyHits' error_rate vs empty share over 5 min > 5 %);
* feedback: 10 ratings an hour, 75 % thumbs up, falling to 30 % or 50 % up
  (FeedbackScoreDrop's score_drop vs mean rating over the last hour < 0 with at least 5).

Also reported: ``embedding_drift``'s per-update time on 384-d vectors (median of blocks
of 100, microseconds) and its state in bytes after the reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.embedding_drift import EmbeddingDrift  # noqa: E402
from detectors.error_rate import ErrorRate  # noqa: E402
from detectors.score_drop import ScoreDrop  # noqa: E402
from detectors.threshold import Threshold  # noqa: E402

DIM = 384
TOPICS = 12
STEP_S = 10.0
CHANGE = 2000
AFTER = 3000
REFERENCE = 1000
KS_WINDOW = 500
WEEK_S = 7 * 86_400.0


class HashingEmbedder:
    """Unigram and bigram feature hashing into ``DIM`` signed buckets, L2-normalised."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, float]] = {}

    def _slot(self, token: str) -> tuple[int, float]:
        hit = self._cache.get(token)
        if hit is None:
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            hit = (value % DIM, 1.0 if (value >> 32) & 1 else -1.0)
            self._cache[token] = hit
        return hit

    def embed(self, words: list[str]) -> np.ndarray:
        v = np.zeros(DIM)
        tokens = words + [f"{a}_{b}" for a, b in zip(words, words[1:], strict=False)]
        for token in tokens:
            i, sign = self._slot(token)
            v[i] += sign
        return v / (np.linalg.norm(v) or 1.0)


class QueryGenerator:
    """Queries from a topic mixture; topic ``TOPICS`` onwards are never in the reference."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.embedder = HashingEmbedder()
        self.vocab = [[f"t{seed}x{t}w{j}" for j in range(200)] for t in range(TOPICS + 1)]
        self.shared = [f"s{j}" for j in range(400)]
        self.zipf = [1.0 / (r + 1) for r in range(200)]
        self.shared_zipf = [1.0 / (r + 1) for r in range(400)]

    def query(self, topic: int) -> tuple[float, ...]:
        n = self.rng.randint(5, 12)
        words = []
        for _ in range(n):
            if self.rng.random() < 0.65:
                words.append(self.rng.choices(self.vocab[topic], self.zipf)[0])
            else:
                words.append(self.rng.choices(self.shared, self.shared_zipf)[0])
        return tuple(self.embedder.embed(words))


BASE = [0.30, 0.15, 0.10, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.04, 0.02, 0.02, 0.0]


def weights(scenario: str, i: int) -> list[float]:
    w = list(BASE)
    if i < CHANGE:
        return w
    if scenario == "new-topic-30":
        return [x * 0.7 for x in w[:-1]] + [0.3]
    if scenario == "new-topic-10":
        return [x * 0.9 for x in w[:-1]] + [0.1]
    if scenario == "mix-shift":
        spread = (0.30 - 0.05) / 11
        return [0.05] + [x + spread for x in w[1:-1]] + [0.0]
    if scenario == "gradual":
        share = min((i - CHANGE) / 2000, 1.0) * 0.4
        return [x * (1 - share) for x in w[:-1]] + [share]
    raise ValueError(scenario)


_ROTATION = np.linalg.qr(np.random.default_rng(384).standard_normal((DIM, DIM)))[0]


def make_stream(scenario: str, n: int, seed: int, dense: bool = False) -> list[tuple[float, ...]]:
    """Hashed (sparse: a topic's frequent words own a few coordinates) or, with ``dense``,
    the same vectors under a fixed random rotation, as a dense encoder spreads a topic
    over every coordinate (distances unchanged)."""
    gen = QueryGenerator(seed)
    rng = random.Random(seed + 1)
    out = []
    for i in range(n):
        w = weights(scenario, i) if scenario != "clean" else BASE
        out.append(gen.query(rng.choices(range(TOPICS + 1), w)[0]))
    if dense:
        return [tuple(row) for row in np.asarray(out) @ _ROTATION]
    return out


# --- the baseline: windowed per-dimension KS ----------------------------------------------
def ks_detections(stream: list[tuple[float, ...]], alpha: float) -> list[int]:
    """Indices (last query of the window) where the per-dimension KS test flagged drift."""
    from scipy.stats import ks_2samp

    data = np.asarray(stream)
    ref = data[:REFERENCE]
    hits = []
    for end in range(REFERENCE + KS_WINDOW, len(data) + 1, KS_WINDOW):
        cur = data[end - KS_WINDOW : end]
        p = ks_2samp(ref, cur, axis=0).pvalue
        if float(np.min(p)) < alpha / DIM:
            hits.append(end - 1)
    return hits


def drift_detections(stream: list[tuple[float, ...]]) -> list[int]:
    """Indices where embedding_drift's verdict turned active (quiet -> active)."""
    det = EmbeddingDrift(reference_size=REFERENCE)
    hits, was = [], False
    for i, x in enumerate(stream):
        active = det.update(x, i * STEP_S).active
        if active and not was:
            hits.append(i)
        was = active
    return hits


def delay(hits: list[int], start: int) -> tuple[int | None, int]:
    """First detection at or after ``start`` (events after it) and false alarms before it."""
    after = [h for h in hits if h >= start]
    return (after[0] - start if after else None), sum(1 for h in hits if h < start)


def summarise(delays: list[int | None], cap: int) -> dict:
    found = [d for d in delays if d is not None]
    return {
        "found": f"{len(found)}/{len(delays)}",
        "mean_delay_events": round(statistics.mean(found), 1) if found else None,
        "median_delay_events": statistics.median(found) if found else None,
        "mean_delay_h": round(statistics.mean(found) * STEP_S / 3600, 2) if found else None,
        "censored_mean_events": round(statistics.mean(d if d is not None else cap for d in delays), 1),
    }


def embedding_bench(seeds: int, weeks: float, dense: bool) -> dict:
    out: dict = {}
    budget_alpha = 1.0 / (30 * 86_400 / STEP_S / KS_WINDOW)
    methods = {
        "embedding_drift": drift_detections,
        "ks-0.05": lambda s: ks_detections(s, 0.05),
        "ks-budget": lambda s: ks_detections(s, budget_alpha),
    }
    for scenario in ("new-topic-30", "new-topic-10", "mix-shift", "gradual"):
        rows = {m: ([], []) for m in methods}
        for seed in range(seeds):
            stream = make_stream(scenario, CHANGE + AFTER, seed, dense)
            for name, method in methods.items():
                d, fa = delay(method(stream), CHANGE)
                rows[name][0].append(d)
                rows[name][1].append(fa)
        out[scenario] = {m: {**summarise(d, AFTER), "false_alarms_before_change": sum(fa)} for m, (d, fa) in rows.items()}
        print(f"{'dense' if dense else 'hashed'} {scenario}: " + "; ".join(f"{m} {r['found']} found, mean {r['mean_delay_events']} events, "
                                          f"FA {r['false_alarms_before_change']}" for m, r in out[scenario].items()))
    n = int(weeks * WEEK_S / STEP_S)
    clean = {m: 0 for m in methods}
    for seed in range(max(1, seeds // 2)):
        stream = make_stream("clean", n, 1000 + seed, dense)
        for name, method in methods.items():
            clean[name] += len(method(stream))
    runs = max(1, seeds // 2)
    out["clean"] = {m: {"false_alarms_per_week": round(c / (runs * weeks), 2), "weeks": runs * weeks} for m, c in clean.items()}
    print(f"{'dense' if dense else 'hashed'} clean: " + "; ".join(f"{m} {r['false_alarms_per_week']} / week" for m, r in out["clean"].items()))
    out["budget_alpha"] = budget_alpha
    return out


# --- the shipped rules' detectors vs static thresholds -----------------------------------
def first_active(det, stream: list[tuple[float, float]], start_ts: float) -> float | None:
    for ts, x in stream:
        if det.update(x, ts).active and ts >= start_ts:
            return ts - start_ts
    return None


def transitions(det, stream: list[tuple[float, float]]) -> int:
    n, was = 0, False
    for ts, x in stream:
        active = det.update(x, ts).active
        n += active and not was
        was = active
    return n


def bernoulli_stream(rng: random.Random, rate_hz: float, seconds: float, p_before: float, p_after: float, change_s: float):
    out, t = [], 0.0
    while t < seconds:
        out.append((t, 1.0 if rng.random() < (p_before if t < change_s else p_after) else 0.0))
        t += 1.0 / rate_hz
    return out


SAFETY = {"slo_target": 0.99, "windows": ((3600.0, 300.0, 4.0), (21600.0, 1800.0, 2.0)), "min_errors": 10}
EMPTY = {"slo_target": 0.98, "windows": ((1800.0, 120.0, 10.0), (21600.0, 1800.0, 4.0)), "min_errors": 10}
FEEDBACK = {"low": -1.0, "high": 1.0, "prior_mean": 0.5, "prior_weight": 20.0, "drop": 0.5, "holdout_s": 21600.0,
            "false_alarm_days": 30.0}  # fmt: skip


def rate_rule_bench(name: str, shipped: dict, static: dict, p0: float, p1s: tuple[float, ...], seeds: int, weeks: float) -> dict:
    """Two cases per rate: a new version (the rules key series by version, so the change
    starts a fresh series: both detectors see only the new version's events) and a jump
    within one series (6 hours at ``p0`` first), e.g. a classifier update."""
    out: dict = {}
    warm, after = 6 * 3600.0, 2 * 3600.0
    for p1 in p1s:
        for case in ("new_version", "same_series"):
            rows = {"shipped": [], "static": []}
            for seed in range(seeds):
                stream = bernoulli_stream(random.Random(seed), 1.0, warm + after, p0, p1, warm)
                if case == "new_version":
                    stream = [(ts, x) for ts, x in stream if ts >= warm]
                for label, factory in (("shipped", lambda: ErrorRate(**shipped)), ("static", lambda: Threshold(**static))):
                    d = first_active(factory(), stream, warm)
                    rows[label].append(None if d is None else d / 60)
            out[f"to_{p1:g}_{case}"] = {k: {"found": f"{sum(d is not None for d in v)}/{len(v)}",
                                            "mean_delay_min": round(statistics.mean([d for d in v if d is not None]), 2)
                                            if any(d is not None for d in v) else None} for k, v in rows.items()}  # fmt: skip
    clean = bernoulli_stream(random.Random(99), 1.0, weeks * WEEK_S, p0, p0, math.inf)
    out["clean_false_alarms_per_week"] = {
        "shipped": round(transitions(ErrorRate(**shipped), clean) / weeks, 2),
        "static": round(transitions(Threshold(**static), clean) / weeks, 2),
    }
    print(f"{name}: {out}")
    return out


def feedback_bench(seeds: int, weeks: float) -> dict:
    out: dict = {}
    static = {"op": "<", "threshold": 0.0, "agg": "mean", "window_s": 3600.0, "min_count": 5}
    gap = 360.0  # 10 ratings an hour
    for up_after in (0.3, 0.5):
        rows = {"shipped": [], "static": []}
        for seed in range(seeds):
            rng = random.Random(seed)
            stream = [(i * gap, 1.0 if rng.random() < (0.75 if i < 240 else up_after) else -1.0) for i in range(240 + 480)]
            for label, det in (("shipped", ScoreDrop(**FEEDBACK)), ("static", Threshold(**static))):
                d = first_active(det, stream, 240 * gap)
                rows[label].append(None if d is None else d / 3600)
        out[f"to_{up_after:.0%}_up"] = {k: {"found": f"{sum(d is not None for d in v)}/{len(v)}",
                                            "mean_delay_h": round(statistics.mean([d for d in v if d is not None]), 2)
                                            if any(d is not None for d in v) else None} for k, v in rows.items()}  # fmt: skip
    fa = {"shipped": 0, "static": 0}
    clean_weeks = max(weeks, 1.0) * 10  # ratings are cheap: ten times the weeks for a steadier rate
    for label in fa:
        rng = random.Random(7)
        stream = [(i * gap, 1.0 if rng.random() < 0.75 else -1.0) for i in range(int(clean_weeks * WEEK_S / gap))]
        fa[label] = transitions(ScoreDrop(**FEEDBACK) if label == "shipped" else Threshold(**static), stream)
    out["clean_false_alarms_per_week"] = {k: round(v / clean_weeks, 2) for k, v in fa.items()}
    print(f"feedback: {out}")
    return out


def cost() -> dict:
    stream = make_stream("clean", 6000, 5)
    det = EmbeddingDrift(reference_size=REFERENCE)
    per = []
    for i in range(0, len(stream), 100):
        t0 = time.perf_counter()
        for j, x in enumerate(stream[i : i + 100]):
            det.update(x, (i + j) * STEP_S)
        if i >= REFERENCE:
            per.append((time.perf_counter() - t0) / 100 * 1e6)
    out = {"median_us": round(statistics.median(per), 1), "p99_us": round(sorted(per)[int(len(per) * 0.99) - 1], 1),
           "state_bytes": len(det.state())}  # fmt: skip
    learning = EmbeddingDrift(reference_size=REFERENCE)
    for i, x in enumerate(stream[: REFERENCE - 1]):
        learning.update(x, i * STEP_S)
    out["state_bytes_while_learning"] = len(learning.state())
    print(f"embedding_drift cost: {out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--weeks", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--parts", default="embedding,rules,cost", help="comma-separated: embedding, rules, cost")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    started = time.time()
    results: dict = {}
    if "embedding" in parts:
        results["embedding_hashed"] = embedding_bench(args.seeds, args.weeks, dense=False)
        results["embedding_dense"] = embedding_bench(args.seeds, args.weeks, dense=True)
    if "rules" in parts:
        results.update(rule_benches(args.seeds, args.weeks))
    if "cost" in parts:
        results["cost"] = cost()
    results["seconds"] = round(time.time() - started, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def rule_benches(seeds: int, weeks: float) -> dict:
    return {
        "safety": rate_rule_bench("safety", SAFETY, {"op": ">", "threshold": 0.02, "agg": "mean", "window_s": 300.0, "min_count": 50},
                                  0.003, (0.08,), seeds, weeks),  # fmt: skip
        "retrieval_empty": rate_rule_bench("retrieval", EMPTY, {"op": ">", "threshold": 0.05, "agg": "mean", "window_s": 300.0, "min_count": 50},
                                           0.005, (1.0, 0.2), seeds, weeks),  # fmt: skip
        "feedback": feedback_bench(seeds, weeks),
    }


if __name__ == "__main__":
    raise SystemExit(main())
