"""TokenSpend: exact firing indices on seeded streams, quiet clean streams, expiry, bad parameters."""

from __future__ import annotations

import json
import math
import random

import pytest

from agent.errors import DetectorError
from detectors.token_spend import TokenSpend

BUDGET_ONLY = {"budget_usd": 3000.0, "spike_window_s": None}
GROWTH_ONLY = {"growth_factor": 2.5, "spike_window_s": None}


def doubling(t0: float = 1800.0, ramp_s: float = 1200.0):
    """x1 until ``t0``, then a linear ramp to x2 over ``ramp_s``, then x2."""
    return lambda ts: 1.0 + min(1.0, max(0.0, ts - t0) / ramp_s)


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


# --- growth --------------------------------------------------------------------------


def test_slow_doubling_fires_during_the_ramp_where_the_spike_test_never_does():
    stream = tokens(2, 3 * 3600, doubling())
    assert first_active(TokenSpend(), stream) is None  # the spike baseline climbs with the ramp
    det = TokenSpend(growth_factor=2.5)
    index = first_active(det, stream)
    assert index == 4760 and stream[index][0] == 2380.0  # 9m40s into the 20 minute ramp
    ev = det.evaluate(stream[index][0]).evidence
    assert ev["test"] == "growth"
    assert ev["cusum"] >= ev["threshold"] == 9.0 and ev["growth_factor"] == 2.5
    assert ev["baseline_size"] == pytest.approx(812, rel=0.05)  # e**6.7: the level before the ramp
    assert ev["ratio"] == pytest.approx(ev["typical_size"] / ev["baseline_size"]) and ev["ratio"] > 1.58
    assert ev["window_s"] >= 0.0 and ev["events"] >= 1 and ev["mean_size"] > ev["baseline_size"]


def test_slow_doubling_of_completion_tokens_fires():
    # ~100 completion tokens a request at one request a second, doubling over 20 minutes
    stream = tokens(1, 2 * 3600, doubling(), seed=3, mu=4.6)
    index = first_active(TokenSpend(**GROWTH_ONLY), stream)
    assert index == 2713  # 15m13s into the ramp


@pytest.mark.parametrize(
    ("rps", "hours", "sd", "seed"), [(2, 6, 0.6, 11), (2, 6, 1.3, 12), (0.2, 24, 0.6, 13), (0.2, 24, 1.3, 14)]
)
def test_growth_stays_quiet_on_clean_streams_from_the_same_generator(rps, hours, sd, seed):
    rng = random.Random(seed)
    stream = [(i / rps, rng.lognormvariate(6.7, sd)) for i in range(int(hours * 3600 * rps))]
    assert first_active(TokenSpend(**GROWTH_ONLY), stream) is None


def test_growth_watches_request_size_not_traffic():
    # twice as many requests of the same size: the spend grows, each request does not
    rng = random.Random(5)
    stream = [(i / 2, rng.lognormvariate(6.7, 0.6)) for i in range(3600)]
    stream += [(1800 + i / 4, rng.lognormvariate(6.7, 0.6)) for i in range(4 * 3600)]
    assert first_active(TokenSpend(**GROWTH_ONLY), stream) is None


def test_a_lasting_doubling_fires_at_once_and_is_learned_within_the_hour():
    stream = tokens(2, 3 * 3600, lambda ts: 2.0 if ts >= 1800 else 1.0)
    scores = verdicts(TokenSpend(**GROWTH_ONLY), stream)
    on = [stream[i][0] for i, s in enumerate(scores) if s.active]
    assert on[0] == 1807.0
    assert on[-1] < 1800.0 + 3600.0  # then the new level is the baseline
    assert scores[-1].value == pytest.approx(stream[-1][1])  # quiet: the last request


def test_growth_value_is_the_mean_request_of_the_rise():
    stream = tokens(2, 3 * 3600, doubling())
    det = TokenSpend(**GROWTH_ONLY)
    score = verdicts(det, stream[:4761])[-1]
    assert score.active and score.value == pytest.approx(score.evidence["mean_size"])


def test_growth_resolves_when_the_series_falls_silent():
    stream = tokens(2, 2700, lambda ts: 2.0 if ts >= 1800 else 1.0)
    det = TokenSpend(**GROWTH_ONLY)
    assert verdicts(det, stream)[-1].active
    assert det.evaluate(stream[-1][0] + 299.0).active
    assert not det.evaluate(stream[-1][0] + 301.0).active


def test_growth_and_spike_at_once_keep_both_evidences_apart():
    stream = tokens(2, 2000, lambda ts: 5.0 if ts >= 1800 else 1.0)
    det = TokenSpend(growth_factor=2.5)
    score = verdicts(det, stream)[-1]
    assert score.active and score.evidence["test"] == "growth+spike"
    ev = score.evidence
    assert ev["window_s"] == 60.0 and ev["growth_window_s"] < 200.0  # the spike's window, and the rise's
    assert {"ratio", "growth_ratio", "baseline_size", "growth_baseline_size", "cusum", "typical_size"} <= set(ev)
    assert score.value == pytest.approx(ev["window_sum"])  # the spike's value wins


def test_zero_negative_and_nan_amounts_teach_the_growth_test_nothing():
    stream = tokens(2, 3600, doubling(1200.0), seed=6)
    junk = [0.0, -1.0, math.nan]
    mixed = [p for i, (ts, x) in enumerate(stream) for p in ([(ts, x)] + ([(ts, junk[i % 3])] if i % 2 else []))]
    with_junk, without = TokenSpend(**GROWTH_ONLY), TokenSpend(**GROWTH_ONLY)
    verdicts(with_junk, mixed)
    verdicts(without, stream)
    assert json.loads(with_junk.state())["state"]["growth"] == json.loads(without.state())["state"]["growth"]


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


@pytest.mark.parametrize(
    "params", [{}, {"budget_usd": 50.0}, {"growth_factor": 2.5}, {"growth_factor": 2.5, "spike_window_s": None}]
)
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
    det = TokenSpend(budget_usd=100.0, growth_factor=2.5)
    for ts, x in tokens(5, 7 * 3600, doubling(3 * 3600), seed=1):
        det.update(x / 1000, ts)
    blob = det.state()
    assert len(blob) < 8192
    state = json.loads(blob)["state"]
    assert [len(r[1]) for r in state["burn"]] == [31, 31] and len(state["spike"][1]) == 31
    assert len(state["growth"]) == 21


def test_growth_round_trip_mid_ramp_gives_identical_verdicts():
    stream = tokens(2, 3 * 3600, doubling())
    whole = verdicts(TokenSpend(**GROWTH_ONLY), stream)
    for cut in (3000, 4700, 6000):  # before, in and after the rise's evidence
        head = TokenSpend(**GROWTH_ONLY)
        first = verdicts(head, stream[:cut])
        assert first + verdicts(TokenSpend.restore(head.state()), stream[cut:]) == whole


def test_growth_alone_is_enough_to_detect_and_is_off_by_default():
    assert TokenSpend(growth_factor=2, spike_window_s=None, growth_half_life_s="2h").growth_half_life_s == 7200.0
    assert TokenSpend().growth_factor is None and TokenSpend()._growth is None


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
        ({"growth_factor": 1.0}, "growth_factor must be a number > 1"),
        ({"growth_factor": "double"}, "growth_factor must be a number > 1"),
        ({"growth_factor": True}, "growth_factor must be a number > 1"),
        ({"growth_factor": math.inf}, "growth_factor must be a number > 1"),
        ({"growth_factor": 2.5, "growth_threshold": 0}, "growth_threshold must be a positive number"),
        ({"growth_factor": 2.5, "growth_threshold": math.nan}, "growth_threshold must be a positive number"),
        ({"growth_factor": 2.5, "growth_half_life_s": 0}, "growth_half_life_s must be longer than 0s"),
        ({"growth_factor": 2.5, "growth_half_life_s": "a while"}, "is not a duration"),
    ],
)
def test_bad_parameters_raise_detector_error(params, fragment):
    with pytest.raises(DetectorError, match=fragment):
        TokenSpend(**params)
