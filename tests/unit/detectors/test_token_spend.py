"""TokenSpend: exact firing indices on seeded streams, quiet clean streams, expiry, bad parameters."""

from __future__ import annotations

import json
import math
import random

import pytest

from agent.errors import DetectorError
from detectors.token_spend import TokenSpend

BUDGET_ONLY = {"budget_usd": 3000.0, "spike_window_s": None}


def tokens(rps: float, seconds: float, scale=lambda ts: 1.0, seed: int = 7, mu: float = 6.7) -> list[tuple[float, float]]:
    """Evenly spaced requests of log-normal size (median ~800 tokens), times ``scale(ts)``."""
    rng = random.Random(seed)
    return [(i / rps, rng.lognormvariate(mu, 0.6) * scale(i / rps)) for i in range(int(seconds * rps))]


def first_active(det, stream):
    return next((i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active), None)


def verdicts(det, stream):
    return [det.update(x, ts) for ts, x in stream]


# --- spikes --------------------------------------------------------------------------


def test_five_fold_burst_fires_at_exact_index():
    stream = tokens(2, 2000, lambda ts: 5.0 if ts >= 1800 else 1.0)
    assert first_active(TokenSpend(), stream) == 3666  # t = 1833 s


def test_prompt_writing_ten_times_more_fires_within_seconds():
    # completion tokens of ~100 a request, then 10x from t = 1800 s: the size test
    stream = tokens(1, 2000, lambda ts: 10.0 if ts >= 1800 else 1.0, seed=3, mu=4.6)
    det = TokenSpend()
    index = first_active(det, stream)
    assert index == 1813  # 13 requests into the change
    ev = det.evaluate(stream[index][0]).evidence
    assert ev["test"] == "spike" and ev["spike"] in ("rate", "size")
    assert ev["window_s"] == 60.0 and ev["ratio"] >= 3.0 and ev["z"] >= 4.0
    assert set(ev) >= {"window_sum", "events", "baseline", "baseline_sd", "mean_size", "baseline_size"}


def test_runaway_loop_fires_on_the_rate():
    # the same requests, suddenly six times as many of them
    rng = random.Random(5)
    stream = [(i / 2, rng.lognormvariate(6.7, 0.6)) for i in range(3600)]
    stream += [(1800 + i / 12, rng.lognormvariate(6.7, 0.6)) for i in range(1200)]
    det = TokenSpend()
    index = first_active(det, stream)
    assert index == 3600 + 292  # 24 s into the loop
    assert det.evaluate(stream[index][0]).evidence["spike"] == "rate"


def test_clean_stream_from_the_same_generator_stays_quiet():
    assert first_active(TokenSpend(), tokens(2, 4 * 3600, seed=11)) is None


def test_sparse_series_with_large_requests_stays_quiet():
    rng = random.Random(2)
    stream = [(i * 600.0 + rng.uniform(0, 60), rng.lognormvariate(8.0, 1.0)) for i in range(200)]
    assert first_active(TokenSpend(), stream) is None


def test_a_series_that_sleeps_does_not_page_when_it_wakes():
    day = tokens(2, 3600, seed=4)
    night = [(ts + 7 * 3600, x) for ts, x in tokens(2, 3600, seed=5)]
    assert first_active(TokenSpend(), day + night) is None


def test_no_spike_verdict_before_the_baseline_is_old_enough():
    # a burst from 540 s is seen at 600 s (min_baseline_s), not before
    stream = tokens(2, 1200, lambda ts: 5.0 if ts >= 540 else 1.0)
    assert stream[first_active(TokenSpend(), stream)][0] == 600.0
    assert stream[first_active(TokenSpend(min_baseline_s=300.0), stream)][0] == 573.0  # 33 s into it
    # one from 500 s has taught the young baseline too much by then
    assert first_active(TokenSpend(), tokens(2, 1200, lambda ts: 5.0 if ts >= 500 else 1.0)) is None


def test_a_lasting_new_level_becomes_the_baseline():
    # even on a constant series (no spread to winsorise with) the baseline is not stuck
    det = TokenSpend()
    active = [det.update(100.0 if i < 1200 else 1000.0, float(i)).active for i in range(3 * 3600)]
    on = [i for i, a in enumerate(active) if a]
    assert (on[0], on[-1], len(on)) == (1213, 1749, 537)


def test_evaluate_expires_the_spike_window():
    stream = tokens(2, 1900, lambda ts: 5.0 if ts >= 1800 else 1.0)
    det = TokenSpend()
    assert verdicts(det, stream)[-1].active
    assert det.evaluate(stream[-1][0] + 30.0).active
    assert not det.evaluate(stream[-1][0] + 61.0).active


# --- budget --------------------------------------------------------------------------


def test_budget_burn_fires_at_exact_index():
    # $3.60/h for 12 h, then $72/h: on course to spend $3000 in 1.7 days once both the 1 h
    # and the 6 h windows say so
    stream = [(i * 10.0, 0.01 if i < 4320 else 0.2) for i in range(10_000)]
    det = TokenSpend(**BUDGET_ONLY)
    index = first_active(det, stream)
    assert index == 5522
    ev = det.evaluate(stream[index][0]).evidence
    assert ev["test"] == "budget" and ev["burn_window_s"] == 21600.0
    assert ev["exhaustion_days"] == pytest.approx(3.0, abs=0.01)
    assert ev["exhaustion_1h_s"] < ev["exhaustion_6h_s"] == ev["exhaustion_s"]
    assert ev["budget_usd_per_h"] == pytest.approx(3000 / 720)
    assert ev["burn_rate"] == pytest.approx(30 / ev["exhaustion_days"])


def test_spend_well_within_budget_stays_quiet():
    rng = random.Random(8)
    stream = [(i * 10.0, rng.expovariate(1 / 0.02)) for i in range(3 * 8640)]  # ~$7.2/h for 3 days
    assert first_active(TokenSpend(**BUDGET_ONLY), stream) is None


def test_a_one_hour_burst_that_averages_out_does_not_warn():
    # $1/h for 12 h, then $100/h for one hour: the 1 h window projects 1.25 days, the 6 h
    # window 7 days, so it is not on course
    stream = [(i * 10.0, 1 / 360) for i in range(4320)] + [(43200.0 + i * 10.0, 100 / 360) for i in range(360)]
    stream += [(46800.0 + i * 10.0, 1 / 360) for i in range(360)]
    assert first_active(TokenSpend(**BUDGET_ONLY), stream) is None
    assert first_active(TokenSpend(**BUDGET_ONLY, burn_windows_s=(3600.0,)), stream) == 4320 + 147


def test_young_series_counts_over_its_age_but_no_less_than_the_shortest_window():
    # $72/h from the first event: 1 h rate reaches $41.67/h at 2080 s, not at once
    stream = [(i * 10.0, 0.2) for i in range(720)]
    assert first_active(TokenSpend(**BUDGET_ONLY), stream) == 208


def test_evaluate_expires_the_budget_windows():
    stream = [(i * 10.0, 0.5) for i in range(720)]
    det = TokenSpend(**BUDGET_ONLY)
    assert verdicts(det, stream)[-1].active
    assert not det.evaluate(stream[-1][0] + 3600.0 + 120.0).active


def test_both_tests_at_once_merge_their_evidence():
    stream = [(i / 2, 0.01) for i in range(3600)] + [(1800 + i / 2, 0.5) for i in range(600)]
    det = TokenSpend(budget_usd=100.0)
    score = verdicts(det, stream)[-1]
    assert score.active and score.evidence["test"] == "budget+spike"
    assert {"exhaustion_days", "ratio"} <= set(score.evidence)


def test_negative_and_nan_amounts_count_as_nothing():
    det = TokenSpend(**BUDGET_ONLY)
    for i, x in enumerate([1.0, -5.0, math.nan, 2.0]):
        score = det.update(x, float(i))
    assert score.value == pytest.approx(3.0)


# --- state and parameters ------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"budget_usd": 50.0}])
def test_state_round_trip_mid_stream_gives_identical_verdicts(params):
    stream = tokens(2, 2200, lambda ts: 5.0 if ts >= 1800 else 1.0, seed=9)
    stream = [(ts, x / 1000) for ts, x in stream]
    whole = verdicts(TokenSpend(**params), stream)
    head = TokenSpend(**params)
    first = verdicts(head, stream[:3000])
    restored = TokenSpend.restore(head.state())
    assert first + verdicts(restored, stream[3000:]) == whole
    assert any(s.active for s in whole[3000:])


def test_state_is_bounded_whatever_the_traffic():
    det = TokenSpend(budget_usd=100.0)
    for ts, x in tokens(5, 7 * 3600, seed=1):
        det.update(x / 1000, ts)
    blob = det.state()
    assert len(blob) < 8192
    state = json.loads(blob)["state"]
    assert [len(r[1]) for r in state["burn"]] == [31, 31] and len(state["spike"][1]) == 31


def test_durations_accept_strings_and_lists():
    det = TokenSpend(budget_usd=10, budget_period_s="30d", alert_horizon_s="3d", burn_windows_s=["1h", "6h"], spike_window_s="1m")
    assert (det.budget_period_s, det.alert_horizon_s, det.burn_windows_s, det.spike_window_s) == (
        2592000.0,
        259200.0,
        (3600.0, 21600.0),
        60.0,
    )
    assert TokenSpend.restore(det.state()).params() == det.params()


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"budget_usd": 0}, "budget_usd must be a positive amount"),
        ({"budget_usd": "lots"}, "budget_usd must be a positive amount"),
        ({"spike_window_s": None}, "nothing to detect"),
        ({"budget_period_s": "a month"}, "is not a duration"),
        ({"alert_horizon_s": 0}, "alert_horizon_s must be longer than 0s"),
        ({"burn_windows_s": ()}, "burn_windows_s must be a non-empty list"),
        ({"burn_windows_s": 3600}, "burn_windows_s must be a non-empty list"),
        ({"spike_window_s": -60}, "spike_window_s"),
        ({"spike_factor": 0.5}, "spike_factor"),
        ({"spike_z": 0}, "spike_z"),
        ({"baseline_half_life_s": 0}, "baseline_half_life_s"),
        ({"min_baseline_s": -1}, "min_baseline_s"),
        ({"min_events": 0}, "min_events"),
    ],
)
def test_bad_parameters_raise_detector_error(params, fragment):
    with pytest.raises(DetectorError, match=fragment):
        TokenSpend(**params)
