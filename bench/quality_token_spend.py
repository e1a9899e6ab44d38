"""Token spend detection quality on the real Azure LLM inference trace (2023), vs a fixed threshold.

    .venv/bin/python bench/quality_token_spend.py [--data DIR] [--tenants 8] [--json out.json]

Data: ``AzureLLMInferenceTrace_{code,conv}.csv`` (Splitwise, CC-BY 4.0), about an hour
each; every file is one service. The trace has no tenants, so each request goes to one of
``--tenants`` synthetic tenants by hashing its row index (``sha256(str(row)) % tenants``,
row 0 = the first data row of the file), which is deterministic and spreads every
burst of the trace over all tenants. The observation is the request's total tokens
(prompt + completion); spend is priced by ``rules/pricing/llm_prices.yaml``'s default
price (the trace names no model). Each tenant is one series, as a rule ``by: [tenant]``
keys it.

Measured, per file and detector:

* false alarms on the raw hour: alert episodes (a series going from quiet to active),
  summed over the tenants, the share of (series x event time) spent active, and the
  highest score any tenant reached (1 is active: how close the quiet ones came);
* detection delay of two injected faults, each run on every tenant at three start
  times (24 trials per file with 8 tenants): a burst (the tenant's tokens x5 for 2
  minutes; detected if active within 2 + 3 minutes of its start) and a slow doubling
  (the tenant's tokens ramp linearly from x1 to x2 over 20 minutes, then stay x2 to
  the end of the file); the delay is from the fault's start to the first active verdict.

Detectors:

* ``spike``: ``TokenSpend()`` with its defaults (spike test: 1 m window vs its baseline);
* ``growth``: the growth test alone, as rule ``LlmCompletionTokenGrowth`` sets it up
  (``TokenSpend(spike_window_s=None, growth_factor=2.5)``, the other growth
  parameters at their defaults): a CUSUM of log request sizes against a baseline
  that all but stops learning while the evidence builds;
* ``spike+growth``: both tests in one detector (``TokenSpend(growth_factor=2.5)``);
* ``spike-slow``: the same test with a 10 m window, factor 1.5 and a 6 h half-life (a
  second, slower rule one might add for gradual growth);
* ``budget``: ``TokenSpend(budget_usd=B, spike_window_s=None)`` on spend, where B is
  what the tenant's raw-hour pace spends in ``--budget-days`` days (so normally it is
  on course to spend its budget in that many days; the alert horizon is 3 days). Its
  1 h and 6 h windows are filled first by six replays of the raw hour (shifted back in
  time), so the budget test starts with full windows; the faults are in the real hour;
* ``threshold``: the simple baseline, a fixed threshold on the tenant's tokens in the
  last minute at mean + 3 sd of its first 10 per-minute totals (``Threshold`` with
  ``agg: sum``, ``window_s: 60``), silent during those 10 minutes.

Also reported: per-update time (median over blocks of 100 updates, microseconds) and the
largest serialised state per series (bytes) of ``TokenSpend`` on the trace.

Two features of the trace shape the doubling results. The conversation trace's traffic
itself rises from about 380k to 800k tokens a minute between minutes 17 and 31 (more
requests, not larger ones), which is why the growth test watches request sizes. And
its typical request shrinks by a third from minute 33 to 41, just as the later
doublings' ramps end, which hides part of the injected growth there.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.rules.pricing import PriceTable  # noqa: E402
from detectors.base import Detector  # noqa: E402
from detectors.threshold import Threshold  # noqa: E402
from detectors.token_spend import TokenSpend  # noqa: E402

FILES = ("code", "conv")
BURST_S, BURST_X, BURST_GRACE_S = 120.0, 5.0, 180.0
RAMP_S = 1200.0
BURST_STARTS_MIN = (20, 30, 40)
RAMP_STARTS_MIN = (15, 20, 25)
WARMUP_S = 600.0  # the threshold baseline learns from the first 10 minutes
HISTORY_REPLAYS = 6
TAIL_HOURS = 8  # the budget test's doubling goes on: the doubled hour is replayed this often
GROWTH = {"growth_factor": 2.5}  # as rules/llm.yaml's LlmCompletionTokenGrowth

Row = tuple[float, int, int]  # (ts, prompt tokens, completion tokens)


def load(path: Path) -> list[Row]:
    rows = []
    with path.open(newline="", encoding="ascii") as fh:
        for rec in csv.DictReader(fh):
            ts = datetime.fromisoformat(rec["TIMESTAMP"]).replace(tzinfo=timezone.utc).timestamp()
            rows.append((ts, int(rec["ContextTokens"]), int(rec["GeneratedTokens"])))
    return rows


def tenant_of(row: int, tenants: int) -> int:
    return int.from_bytes(hashlib.sha256(str(row).encode()).digest()[:8], "big") % tenants


def by_tenant(rows: list[Row], tenants: int) -> list[list[Row]]:
    out: list[list[Row]] = [[] for _ in range(tenants)]
    for i, row in enumerate(rows):
        out[tenant_of(i, tenants)].append(row)
    return out


def burst(t0: float) -> Callable[[float], float]:
    return lambda ts: BURST_X if t0 <= ts < t0 + BURST_S else 1.0


def ramp(t0: float) -> Callable[[float], float]:
    return lambda ts: 1.0 if ts < t0 else 1.0 + min(1.0, (ts - t0) / RAMP_S)


def scaled(rows: list[Row], factor: Callable[[float], float] | None) -> list[Row]:
    if factor is None:
        return rows
    return [(ts, round(p * factor(ts)), round(c * factor(ts))) for ts, p, c in rows]


class Candidate:
    """One detector set-up: how to build it for a tenant, and what it observes."""

    def __init__(
        self,
        name: str,
        build: Callable[[list[Row]], Detector],
        observe: Callable[[Row], float],
        history: bool = False,
        tail_hours: int = 0,
    ) -> None:
        self.name, self.build, self.observe = name, build, observe
        self.history, self.tail_hours = history, tail_hours

    def scores(self, raw: list[Row], rows: list[Row]) -> list[tuple[float, bool, float]]:
        """(ts, active, score) for every request of ``rows``; ``raw`` is the uninjected tenant."""
        det = self.build(raw)
        if self.history:
            span = raw[-1][0] - raw[0][0] + 1.0
            for k in range(HISTORY_REPLAYS, 0, -1):
                for ts, p, c in raw:
                    det.update(self.observe((ts, p, c)), ts - k * span)
        return [(row[0], s.active, s.score) for row in rows for s in (det.update(self.observe(row), row[0]),)]

    def verdicts(self, raw: list[Row], rows: list[Row]) -> list[tuple[float, bool]]:
        """(ts, active) for every request of ``rows``; ``raw`` is the uninjected tenant."""
        return [(ts, active) for ts, active, _ in self.scores(raw, rows)]


def episodes(verdicts: list[tuple[float, bool]]) -> tuple[int, float]:
    """Quiet-to-active transitions, and seconds spent active (until the next event)."""
    count, active_s, prev = 0, 0.0, False
    for (ts, active), nxt in zip(verdicts, verdicts[1:] + [verdicts[-1]], strict=True):
        count += active and not prev
        if active:
            active_s += nxt[0] - ts
        prev = active
    return count, active_s


def delay(verdicts: list[tuple[float, bool]], t0: float, until: float) -> tuple[float, float] | None:
    """Seconds from the fault's start, and from its first bad request, to the first alarm."""
    first_bad = None
    for ts, active in verdicts:
        if t0 <= ts <= until:
            first_bad = ts if first_bad is None else first_bad
            if active:
                return ts - t0, ts - first_bad
    return None


def tokens(row: Row) -> float:
    return float(row[1] + row[2])


def pricer(prices: PriceTable) -> Callable[[Row], float]:
    """USD of one request at the table's default price (the trace names no model)."""
    price = prices.default
    if price is None:
        raise SystemExit("the price table has no default price")
    return lambda row: price.cost(row[1], row[2])


def candidates(spend: Callable[[Row], float], budget_days: float) -> list[Candidate]:
    def threshold(raw: list[Row]) -> Detector:
        start = raw[0][0]
        minutes = [0.0] * int(WARMUP_S // 60)
        for row in raw:
            m = int((row[0] - start) // 60)
            if m < len(minutes):
                minutes[m] += tokens(row)
        limit = statistics.mean(minutes) + 3 * statistics.stdev(minutes)
        return _Silenced(Threshold(op=">", threshold=limit, agg="sum", window_s=60.0), start + WARMUP_S)

    def budget(raw: list[Row]) -> Detector:
        span = raw[-1][0] - raw[0][0]
        per_s = sum(spend(r) for r in raw) / span
        return TokenSpend(budget_usd=per_s * budget_days * 86400.0, spike_window_s=None)

    return [
        Candidate("spike", lambda raw: TokenSpend(), tokens),
        Candidate("growth", lambda raw: TokenSpend(spike_window_s=None, **GROWTH), tokens),
        Candidate("spike+growth", lambda raw: TokenSpend(**GROWTH), tokens),
        Candidate(
            "spike-slow",
            lambda raw: TokenSpend(spike_window_s=600.0, spike_factor=1.5, baseline_half_life_s=21600.0, min_baseline_s=900.0),
            tokens,
        ),
        Candidate(
            "spike-slow-z3",
            lambda raw: TokenSpend(
                spike_window_s=600.0, spike_factor=1.5, spike_z=3.0, baseline_half_life_s=21600.0, min_baseline_s=900.0
            ),
            tokens,
        ),
        Candidate(f"budget({budget_days:g}d)", budget, spend, history=True, tail_hours=TAIL_HOURS),
        Candidate("threshold", threshold, tokens),
    ]


class _Silenced(Detector):
    """The threshold baseline says nothing while it is still learning its limit."""

    def __init__(self, inner: Detector, start: float) -> None:
        self.inner, self.start = inner, start

    def update(self, x: float, ts: float):  # type: ignore[override]
        score = self.inner.update(x, ts)
        return score if ts >= self.start else type(score)(0.0, False, score.value)


def summarise(delays: list[tuple[float, float] | None]) -> dict[str, Any]:
    hits = [d for d in delays if d is not None]
    start = sorted(d[0] for d in hits)
    first = sorted(d[1] for d in hits)
    return {
        "detected": len(hits),
        "trials": len(delays),
        "median_delay_s": round(statistics.median(start), 1) if hits else None,
        "max_delay_s": round(max(start), 1) if hits else None,
        "median_delay_from_first_bad_s": round(statistics.median(first), 1) if hits else None,
        "max_delay_from_first_bad_s": round(max(first), 1) if hits else None,
    }


def cost(rows_by_tenant: list[list[Row]], make: Callable[[], Detector], observe: Callable[[Row], float]) -> dict[str, Any]:
    blocks, state = [], 0
    for rows in rows_by_tenant:
        det = make()
        for i in range(0, len(rows), 100):
            block = [(observe(r), r[0]) for r in rows[i : i + 100]]
            t0 = time.perf_counter()
            for x, ts in block:
                det.update(x, ts)
            blocks.append((time.perf_counter() - t0) / len(block) * 1e6)
        state = max(state, len(det.state()))
    return {"median_us": round(statistics.median(blocks), 2), "state_bytes": state}


def run(data: Path, tenants: int, budget_days: float) -> dict[str, Any]:
    spend = pricer(PriceTable.load(ROOT / "rules" / "pricing" / "llm_prices.yaml"))
    cands = candidates(spend, budget_days)
    results: dict[str, Any] = {"tenants": tenants, "files": {}}
    for name in FILES:
        rows = load(data / f"AzureLLMInferenceTrace_{name}.csv")
        series = by_tenant(rows, tenants)
        start = rows[0][0]
        end = rows[-1][0]
        sparse = sum(
            sum(1 for r in s if t0 <= r[0] < t0 + BURST_S) < 3
            for s in series
            for t0 in (start + m * 60.0 for m in BURST_STARTS_MIN)
        )
        file_out: dict[str, Any] = {
            "requests": len(rows),
            "hours": round((end - start) / 3600.0, 2),
            "burst_trials_with_under_3_requests": sparse,
            "detectors": {},
        }
        for cand in cands:
            raw_scores = [cand.scores(s, s) for s in series]
            eps = [episodes([(ts, active) for ts, active, _ in v]) for v in raw_scores]
            bursts, ramps = [], []
            for s in series:
                for minute in BURST_STARTS_MIN:
                    t0 = start + minute * 60.0
                    bursts.append(delay(cand.verdicts(s, scaled(s, burst(t0))), t0, t0 + BURST_S + BURST_GRACE_S))
                for minute in RAMP_STARTS_MIN:
                    t0 = start + minute * 60.0
                    rows_k = scaled(s, ramp(t0))
                    span = s[-1][0] - s[0][0] + 1.0
                    for h in range(1, cand.tail_hours + 1):
                        rows_k += [(ts + h * span, 2 * p, 2 * c) for ts, p, c in s]
                    ramps.append(delay(cand.verdicts(s, rows_k), t0, rows_k[-1][0]))
            file_out["detectors"][cand.name] = {
                "false_alarms": sum(e for e, _ in eps),
                "active_share": round(sum(a for _, a in eps) / (tenants * (end - start)), 5),
                "raw_peak_score": round(max(score for v in raw_scores for _, _, score in v), 3),
                "burst_x5_2m": summarise(bursts),
                "doubling_20m": summarise(ramps),
            }
        file_out["cost"] = {
            "spike": cost(series, TokenSpend, tokens),
            "budget+spike": cost(series, lambda: TokenSpend(budget_usd=100.0), spend),
            "growth": cost(series, lambda: TokenSpend(spike_window_s=None, **GROWTH), tokens),
            "spike+growth": cost(series, lambda: TokenSpend(**GROWTH), tokens),
        }
        results["files"][name] = file_out
    return results


def show(results: dict[str, Any]) -> None:
    print(f"tenants per file: {results['tenants']} (by sha256 of the row index)")
    print("delays: median/max from the fault's start (in brackets: from its first bad request)")
    head = (
        f"{'file':<5} {'detector':<14} {'false alarms':>12} {'active':>8} {'peak':>5}  "
        f"{'x5 burst 2m: found, delays':<38} {'doubling 20m: found, delays'}"
    )
    print(head)
    for name, f in results["files"].items():
        print(
            f"{name}: {f['requests']} requests over {f['hours']} h; "
            f"{f['burst_trials_with_under_3_requests']} burst trials hit fewer than 3 requests"
        )
        for det, r in f["detectors"].items():
            b, d = r["burst_x5_2m"], r["doubling_20m"]
            print(
                f"{name:<5} {det:<14} {r['false_alarms']:>12} {r['active_share'] * 100:>7.2f}% "
                f"{r['raw_peak_score']:>5.2f}  {_cell(b):<38} {_cell(d)}"
            )
        for what, c in f["cost"].items():
            print(f"{name:<5} cost {what:<12} median {c['median_us']} us/update, state {c['state_bytes']} B/series")


def _cell(s: dict[str, Any]) -> str:
    text = f"{s['detected']}/{s['trials']}"
    if s["detected"]:
        text += f", {s['median_delay_s']:g}/{s['max_delay_s']:g}s ({s['median_delay_from_first_bad_s']:g}/{s['max_delay_from_first_bad_s']:g}s)"
    return text


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "azure_llm_2023")
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument(
        "--budget-days", type=float, default=5.0, help="the tenants' normal pace spends the budget in this many days"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(None if argv is None else list(argv))
    missing = [f for f in FILES if not (args.data / f"AzureLLMInferenceTrace_{f}.csv").is_file()]
    if missing:
        print(
            f"no Azure LLM trace in {args.data} (missing AzureLLMInferenceTrace_{missing[0]}.csv); "
            "get data/AzureLLMInferenceTrace_{code,conv}.csv from github.com/Azure/AzurePublicDataset "
            "and pass --data DIR",
            file=sys.stderr,
        )
        return 2
    if args.tenants < 1:
        parser.error("--tenants must be >= 1")
    results = run(args.data, args.tenants, args.budget_days)
    show(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
