"""ErrorRate: exact firing indices on seeded streams, quiet clean streams, expiry, bad parameters."""

from __future__ import annotations

import json
import random

import pytest

from agent.errors import DetectorError
from detectors.error_rate import ErrorRate

PAGING = ((3600.0, 300.0, 14.4),)


def requests(rps: float, seconds: float, ratio, seed: int = 7) -> list[tuple[float, float]]:
    """Evenly spaced requests, each failing with ``ratio(ts)``."""
    rng = random.Random(seed)
    return [(i / rps, float(rng.random() < ratio(i / rps))) for i in range(int(seconds * rps))]


def first_active(det, stream):
    return next((i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active), None)


def verdicts(det, stream):
    return [det.update(x, ts) for ts, x in stream]


# --- SLO mode ------------------------------------------------------------------------


def test_outage_pages_at_exact_index():
    stream = requests(2, 4000, lambda ts: 0.0005 if ts < 3600 else 0.5)
    assert first_active(ErrorRate(), stream) == 7263  # t = 3631.5 s: 31.5 s into the outage


def test_steady_errors_within_budget_stay_quiet():
    for ratio in (0.0005, 0.0009):
        stream = requests(2, 12 * 3600, lambda ts, r=ratio: r, seed=3)
        assert first_active(ErrorRate(), stream) is None


def test_slow_leak_pages_on_the_six_hour_pair_only():
    # 1.2 % errors (12x): below 14.4x, above 6x, after 6 h at 0.5x; the 6 h window
    # averages 6x after 2.9 h
    stream = requests(1, 9.5 * 3600, lambda ts: 0.0005 if ts < 6 * 3600 else 0.012, seed=5)
    det = ErrorRate()
    index = first_active(det, stream)
    assert index == 31938
    score = det.evaluate(stream[index][0])
    assert (score.evidence["window_s"], score.evidence["short_window_s"], score.evidence["factor"]) == (21600.0, 1800.0, 6.0)


def test_both_windows_of_a_pair_must_burn():
    # 100 errors in a row after an hour: the 1h window keeps burning > 14.4x long after
    # the 5m window is clean again, and the pair resolves with the short window
    stream = [(float(i), 0.0) for i in range(3600)] + [(3600.0 + i, 1.0) for i in range(100)]
    stream += [(3700.0 + i, 0.0) for i in range(900)]
    det = ErrorRate(windows=PAGING)
    active = [s.active for s in verdicts(det, stream)]
    assert active.index(True) == 3651
    last = len(active) - 1 - active[::-1].index(True)
    # the last 5 errors (3695-3699) leave the 5m window at 3995 s; its 10 s buckets count
    # the oldest one pro rata, so the window holds 5 errors (1.67 %) up to there
    assert stream[last][0] == 3995.0
    long_errors, long_requests = det._counts(stream[-1][0])[1]
    assert long_errors / long_requests > 14.4 * 0.001


def test_min_errors_keeps_a_few_failures_on_a_quiet_service_quiet():
    stream = [(i * 60.0, 1.0 if i in (3, 4, 5, 6) else 0.0) for i in range(20)]
    assert first_active(ErrorRate(), stream) is None
    stream[10] = (600.0, 1.0)
    assert first_active(ErrorRate(), stream) == 10
    assert first_active(ErrorRate(min_errors=1), stream) == 3


def test_evidence_says_why():
    stream = [(float(i), 0.0) for i in range(3600)] + [(3600.0 + i, 1.0) for i in range(60)]
    det = ErrorRate()
    score = verdicts(det, stream)[-1]
    assert score.active and score.score == 1.0
    ev = score.evidence
    assert set(ev) >= {"slo_target", "budget", "baseline", "factor", "window_s", "short_window_s", "burn_rate"}
    assert set(ev) >= {"error_ratio", "errors", "requests", "burn_1h", "burn_5m", "burn_6h", "burn_30m"}
    assert ev["slo_target"] == 0.999 and ev["budget"] == pytest.approx(0.001)
    assert ev["burn_rate"] >= ev["factor"]
    names = {300.0: "burn_5m", 1800.0: "burn_30m", 3600.0: "burn_1h", 21600.0: "burn_6h"}
    assert ev[names[ev["short_window_s"]]] == pytest.approx(ev["short_burn_rate"])
    assert ev[names[ev["window_s"]]] == pytest.approx(ev["long_burn_rate"])
    assert ev["error_ratio"] == pytest.approx(ev["errors"] / ev["requests"])
    assert score.value == pytest.approx(ev["burn_5m"] * 0.001)  # the value is the newest window's ratio
    quiet = det.evaluate(10_000.0)
    assert not quiet.active and dict(quiet.evidence) == {}


def test_evaluate_expires_the_short_window():
    stream = [(float(i), 0.0) for i in range(3600)] + [(3600.0 + i, 1.0) for i in range(120)]
    det = ErrorRate(windows=PAGING)
    assert verdicts(det, stream)[-1].active
    assert det.evaluate(3719.0 + 200.0).active
    assert not det.evaluate(3719.0 + 310.0).active
    assert not det.evaluate(3719.0 + 200.0).active  # event time never goes back


def test_event_time_never_goes_back():
    det = ErrorRate(windows=PAGING)
    for i in range(100):
        det.update(0.0, float(i))
    late = det.update(1.0, 5.0)
    assert late.value == pytest.approx(1 / 101, rel=0.05)


def test_windows_accept_yaml_lists_and_durations():
    det = ErrorRate(windows=[["1h", "5m", 14.4], ["6h", "30m", 6]], anomaly_windows_s=["1m", 600])
    assert det.windows == ((3600.0, 300.0, 14.4), (21600.0, 1800.0, 6.0))
    assert det.anomaly_windows_s == (60.0, 600.0)
    again = ErrorRate.restore(det.state())
    assert again.params() == det.params()


def test_state_is_bounded_whatever_the_traffic():
    det = ErrorRate()
    for i in range(60_000):
        det.update(float(i % 50 == 0), i * 0.4)  # 2.5 requests/s for 6.7 h
    blob = det.state()
    assert len(blob) < 8192
    rings = json.loads(blob)["state"]["rings"]
    assert [len(r[1]) for r in rings] == [31, 31, 31, 31]


# --- anomaly mode --------------------------------------------------------------------


def test_anomaly_steady_two_percent_stays_quiet():
    stream = requests(10, 4 * 3600, lambda ts: 0.02, seed=11)
    assert first_active(ErrorRate(slo_target=None), stream) is None


def test_anomaly_jump_to_twenty_percent_fires_in_seconds():
    stream = requests(10, 1400, lambda ts: 0.02 if ts < 1200 else 0.2)
    det = ErrorRate(slo_target=None)
    index = first_active(det, stream)
    assert index == 12159  # t = 1215.9 s
    ev = det.evaluate(stream[index][0]).evidence
    assert ev["window_s"] == 60.0
    assert 0.015 < ev["baseline"] < 0.025  # the jump is not in the baseline yet
    assert ev["error_ratio"] > 2 * ev["baseline"] and ev["p_value_bound"] < 1e-6


def test_anomaly_small_shift_on_a_busy_service_is_not_a_page():
    # 2 % -> 3 %: far beyond chance at 50 requests/s, but only 1.5x the baseline
    stream = requests(50, 1800, lambda ts: 0.02 if ts < 1200 else 0.03, seed=2)
    assert first_active(ErrorRate(slo_target=None), stream) is None
    assert first_active(ErrorRate(slo_target=None, min_factor=1.0), stream) is not None


def test_anomaly_needs_a_baseline_and_learns_a_high_one():
    # failing 30 % from the start is this service's normal: nothing to compare with at first,
    # and then it is the baseline
    stream = requests(5, 3 * 3600, lambda ts: 0.3, seed=4)
    assert first_active(ErrorRate(slo_target=None), stream) is None


@pytest.mark.parametrize("params", [{}, {"slo_target": None}])
def test_state_round_trip_mid_stream_gives_identical_verdicts(params):
    stream = requests(5, 2400, lambda ts: 0.02 if ts < 1800 else 0.3, seed=9)
    whole = verdicts(ErrorRate(**params), stream)
    head = ErrorRate(**params)
    first = verdicts(head, stream[:9000])
    restored = ErrorRate.restore(head.state())
    assert first + verdicts(restored, stream[9000:]) == whole
    assert any(s.active for s in whole[9000:])


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"slo_target": 1.0}, "slo_target must be a fraction"),
        ({"slo_target": "99.9%"}, "slo_target must be a fraction"),
        ({"windows": ()}, "windows must be a non-empty list"),
        ({"windows": ((3600.0, 300.0),)}, "is not a triple"),
        ({"windows": ((300.0, 3600.0, 14.4),)}, "short window"),
        ({"windows": (("1 hour", 300.0, 14.4),)}, "is not a duration"),
        ({"windows": ((3600.0, 0.0, 14.4),)}, "longer than 0s"),
        ({"windows": ((3600.0, 300.0, -1.0),)}, "burn factor"),
        ({"windows": ((3600.0, 300.0, 2000.0),)}, "can never fire"),
        ({"min_errors": 0}, "min_errors"),
        ({"min_errors": 2.5}, "min_errors"),
        ({"anomaly_windows_s": 60.0}, "anomaly_windows_s"),
        ({"baseline_half_life_s": 0}, "baseline_half_life_s"),
        ({"p_value": 0.0}, "p_value"),
        ({"min_factor": 0.5}, "min_factor"),
        ({"min_baseline_count": 0}, "min_baseline_count"),
    ],
)
def test_bad_parameters_raise_detector_error(params, fragment):
    with pytest.raises(DetectorError, match=fragment):
        ErrorRate(**params)
