"""LatencyAnomaly on fixed seeded streams: where it first fires, and that it stays quiet."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

from agent.errors import DetectorError
from detectors.latency_anomaly import LatencyAnomaly

T0 = 1_700_000_000.0  # event time of the first point
STEP_S = 300.0  # a pre-aggregated KPI: one point every 5 minutes
NAB = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "nab"


def kpi(seed: int, n: int = 2400, *, fault: str | None = None, at: int = 1200, size: float = 0.0, daily_ms: float = 0.0):
    """(ts, latency ms): 120 ms, noise sd 8 ms, an optional daily sine and one fault from ``at``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = T0 + i * STEP_S
        x = 120.0 + daily_ms * math.sin(2.0 * math.pi * (ts % 86400.0) / 86400.0) + rng.gauss(0.0, 8.0)
        if fault == "spike" and i == at:
            x += size
        elif fault == "shift" and i >= at:
            x += size
        elif fault == "creep" and i >= at:
            x += size * (i - at)
        elif fault == "bump" and at <= i < at + 12:  # one hour off
            x += size
        out.append((ts, x))
    return out


def requests(seed: int, n: int, *, rate_hz: float = 10.0, slow: tuple[int, int] | None = None):
    """Per-request latencies (log-normal around 80 ms, p99 ~160 ms), twice as slow inside ``slow``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = rng.lognormvariate(math.log(80.0), 0.3)
        if slow is not None and slow[0] <= i < slow[1]:
            x *= 2.0
        out.append((T0 + i / rate_hz, x))
    return out


def verdicts(stream, **params):
    det = LatencyAnomaly(**{"bucket_s": 0.0, **params})
    return [det.update(x, ts) for ts, x in stream]


def fired(stream, **params) -> list[tuple[int, str]]:
    return [(i, v.evidence["test"]) for i, v in enumerate(verdicts(stream, **params)) if v.active]


# --- where it fires --------------------------------------------------------------------------
def test_quiet_on_clean_data_from_the_same_generator():
    assert fired(kpi(2)) == []
    assert fired(kpi(2, n=2880, daily_ms=40.0)) == []


def test_spike_fires_on_the_spike_itself():
    assert fired(kpi(2, fault="spike", size=80.0)) == [(1200, "spike")]


def test_level_shift_fires_within_minutes():
    assert fired(kpi(2, fault="shift", size=16.0)) == [(1204, "shift")]  # +2 sd: a 20-minute run


def test_slow_creep_fires_once_the_level_has_left_its_reference():
    # +0.05 ms per 5 minutes (14 ms a day, under 2 sd): the baseline follows, the reference does not
    assert fired(kpi(2, fault="creep", size=0.05)) == [(2259, "creep")]


def test_daily_profile_no_alarm_at_peaks_but_an_off_hour_bump_fires():
    trough = 2541  # day 8, 17:58 UTC: the bottom of the daily sine (18:00)
    assert abs((T0 + trough * STEP_S) % 86400.0 - 18 * 3600.0) < STEP_S
    stream = kpi(2, n=2880, daily_ms=40.0, fault="bump", at=trough, size=40.0)
    got = verdicts(stream)
    assert [(i, v.evidence["test"]) for i, v in enumerate(got) if v.active] == [(2544, "shift")]
    evidence = got[2544].evidence
    assert evidence["season"] == "daily"
    low, high = evidence["low"], evidence["high"]
    assert low < stream[2544][1] < high  # inside the range: only the profile makes it news
    assert evidence["baseline"] < 100.0  # the learned trough, not the 120 ms mean


def test_active_verdict_says_why():
    got = verdicts(kpi(2, fault="spike", size=80.0))[1200]
    assert got.active and got.score == 1.0 and got.value == pytest.approx(got.evidence["value"])
    evidence = got.evidence
    wanted = {"test", "value", "baseline", "spread", "z", "score", "p_value", "window_s", "average_n", "bucket_s"}
    assert wanted <= set(evidence) and {"low", "high", "reference", "season"} <= set(evidence)
    assert evidence["baseline"] == pytest.approx(120.0, abs=3.0)
    assert evidence["z"] > 10.0
    json.dumps(dict(evidence))  # evidence travels in alerts


def test_one_incident_gives_one_detection():
    got = verdicts(kpi(2, fault="bump", size=60.0))  # an hour 7 sd off
    assert [(i, v.evidence["test"]) for i, v in enumerate(got) if v.active] == [(1200, "spike")]
    assert all(v.score < 0.5 for v in got[1201:1236])  # held below the threshold for 3 h (36 points)


def test_a_change_that_persists_is_reported_again_after_the_refractory_period():
    got = verdicts(kpi(2, fault="shift", size=60.0))
    assert [(i, v.evidence["test"]) for i, v in enumerate(got) if v.active] == [(1200, "spike"), (1236, "shift")]


def test_inactive_verdicts_share_the_empty_evidence():
    got = verdicts(kpi(2, n=300))
    assert not any(v.active for v in got)
    assert len({id(v.evidence) for v in got}) == 1 and not got[-1].evidence


# --- buckets and the SLO mode ------------------------------------------------------------------
def test_slo_mode_is_active_while_the_window_p99_is_over_target():
    det = LatencyAnomaly(slo_ms=250.0, slo_quantile=0.99, slo_window_s=60.0)
    got = [det.update(x, ts) for ts, x in requests(2, 12000, slow=(6000, 9000))]
    changes = [(i, v.active) for i, v in enumerate(got) if v.active != (got[i - 1].active if i else False)]
    assert changes == [(6051, True), (9520, False)]  # 5 s into the slowdown; the window forgets in ~52 s
    evidence = got[6051].evidence
    assert evidence["test"] == "slo" and evidence["slo_ms"] == 250.0 and evidence["over_ratio"] > 0.01
    assert got[6051].score == 1.0 and got[5999].score == 0.0


def test_buckets_score_a_per_minute_p95():
    stream = requests(3, 6000)  # 10 minutes at 10 requests a second
    det = LatencyAnomaly()  # bucket_s=60, bucket_agg="p95"
    scored = []
    for ts, x in stream:
        n_before = det._n
        verdict = det.update(x, ts)
        if det._n > n_before:  # a bucket closed on this update
            scored.append(verdict.value)
    exact = []
    for k in range(len(scored)):
        minute = sorted(x for ts, x in stream if T0 // 60 * 60 + 60 * k <= ts < T0 // 60 * 60 + 60 * (k + 1))
        exact.append(minute[math.ceil(0.95 * len(minute)) - 1])
    assert len(scored) == 10
    for estimate, truth in zip(scored, exact, strict=True):
        assert estimate == pytest.approx(truth, rel=0.05)  # P-square, five markers per bucket


def test_evaluate_closes_a_bucket_that_ended():
    det = LatencyAnomaly(bucket_agg="mean")
    for k in range(5):
        det.update(100.0 + k, T0 + k)
    assert not det.evaluate(T0 + 30.0).active and det._n == 0  # still open
    verdict = det.evaluate(T0 + 61.0)
    assert det._n == 1 and verdict.value == pytest.approx(102.0)
    assert math.isnan(det.evaluate(T0 + 200.0).value)  # nothing open: a quiet verdict


# --- parameters and state -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"threshold": 0.0}, "threshold must be a number in (0, 1]"),
        ({"threshold": 1.5}, "threshold must be a number in (0, 1]"),
        ({"threshold": True}, "threshold must be a number"),
        ({"bucket_s": -1.0}, "bucket_s must be a number in [0, inf]"),
        ({"bucket_agg": "median"}, "bucket_agg 'median' is not mean, max or a quantile like p95"),
        ({"bucket_agg": "p100"}, "bucket_agg 'p100'"),
        ({"level_halflife_s": 0.0}, "level_halflife_s must be a number in (0, inf]"),
        ({"average_n": 0}, "average_n must be an integer >= 1"),
        ({"history_n": 2.5}, "history_n must be an integer >= 2"),
        ({"range_margin_ratio": float("nan")}, "range_margin_ratio must be a number"),
        ({"refractory_s": -5}, "refractory_s must be a number in [0, inf]"),
        ({"warmup_s": "1d"}, "warmup_s must be a number"),
        ({"slo_ms": -1.0}, "slo_ms must be a number in [0, inf]"),
        ({"slo_quantile": 0.0}, "slo_quantile must be a number in (0, 1]"),
        ({"slo_window_s": 0.0}, "slo_window_s must be a number in (0, inf]"),
        ({"slo_min_count": 0}, "slo_min_count must be an integer >= 1"),
    ],
)
def test_bad_parameters_raise_a_readable_detector_error(params, fragment):
    with pytest.raises(DetectorError) as caught:
        LatencyAnomaly(**params)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("latency_anomaly: ")


def _replay(det, stream):
    return [(v.score, v.active, v.value, dict(v.evidence)) for v in (det.update(x, ts) for ts, x in stream)]


@pytest.mark.parametrize(
    ("params", "stream"),
    [
        ({"bucket_s": 0.0}, kpi(2, n=2880, daily_ms=40.0, fault="bump", at=2541, size=40.0)),
        ({"slo_ms": 150.0, "slo_window_s": 30.0}, requests(5, 20000, slow=(9000, 12000))),
        ({"bucket_s": 120.0, "warmup_s": 600.0}, requests(6, 14400, rate_hz=1.0, slow=(11000, 14400))),
    ],
)
def test_state_round_trip_mid_stream_gives_identical_verdicts(params, stream):
    expected = _replay(LatencyAnomaly(**params), stream)
    for cut in (1, 777, len(stream) // 2 + 3, len(stream) - 5):  # mid-bucket cuts included
        head = LatencyAnomaly(**params)
        got = _replay(head, stream[:cut])
        blob = head.state()
        json.loads(blob)
        got += _replay(LatencyAnomaly.restore(blob), stream[cut:])
        assert got == expected
    assert any(active for _, active, _, _ in expected)


def test_state_stays_under_8_kb():
    det = LatencyAnomaly(slo_ms=200.0)
    for ts, x in kpi(4, n=3 * 2016, daily_ms=30.0):  # three weeks at 5-minute steps: both profiles full
        det.update(x, ts)
    det.update(100.0, T0 + 3 * 2016 * STEP_S)  # a bucket open mid-way
    assert all(det._day_n) and all(det._week_n)
    assert len(det.state()) < 8192


# --- real data -----------------------------------------------------------------------------------------
@pytest.mark.skipif(not (NAB / "labels" / "combined_windows.json").is_file(), reason=f"NAB extract not found at {NAB}")
def test_fires_inside_the_labelled_windows_of_a_real_latency_failure():
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from bench.nab import load_corpus, probation_rows, score_file, load_profiles

    series = next(s for s in load_corpus(NAB) if s.name == "realKnownCause/ec2_request_latency_system_failure.csv")
    det = LatencyAnomaly()  # the defaults, as in bench/quality_latency.py
    active = [det.update(x, ts).active for ts, x in zip(series.ts, series.values, strict=True)]
    hits = [i for i, a in enumerate(active) if a and i >= probation_rows(len(active))]
    inside = [i for i in hits if any(lo <= i <= hi for lo, hi in series.windows)]
    assert len(inside) >= 3 and all(any(lo <= i <= hi for i in inside) for lo, hi in series.windows)
    assert len(hits) - len(inside) <= 3
    assert score_file(active, series.windows, load_profiles(NAB)["standard"]).score > 1.5
