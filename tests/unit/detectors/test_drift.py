"""Drift: exact firing indices on seeded streams, quiet clean streams, the time budget, checkpoints."""

from __future__ import annotations

import math
import random

import pytest

from agent.errors import DetectorError
from detectors.drift import Drift

DAY_S = 86_400.0


def first_active(det, stream, step=1.0):
    for i, x in enumerate(stream):
        if det.update(x, ts=i * step).active:
            return i
    return None


def gauss(seed, before, after, mean=0.0, sd=1.0):
    rng = random.Random(seed)
    return [rng.gauss(0.0, 1.0) for _ in range(before)] + [rng.gauss(mean, sd) for _ in range(after)]


def run(det, stream, step=1.0, start=0):
    return [det.update(x, ts=(start + i) * step) for i, x in enumerate(stream)]


@pytest.mark.parametrize(
    ("stream", "index", "test"),
    [
        (gauss(1, 2000, 1000, mean=1.0), 2029, "mean_up"),
        (gauss(1, 2000, 1000, mean=-0.5), 2075, "mean_down"),
        (gauss(2, 2000, 1000, sd=2.0), 2039, "scale_up"),
        (gauss(2, 2000, 1000, sd=0.5), 2071, "scale_down"),
    ],
    ids=["mean+1sd", "mean-0.5sd", "sd*2", "sd/2"],
)
def test_fires_at_known_index_with_the_right_test(stream, index, test):
    det = Drift(reference_size=1000)
    assert first_active(det, stream) == index
    score = det.update(stream[index + 1], ts=float(index + 1))
    assert score.active and score.score == 1.0 and score.value >= 0.5
    assert score.evidence["test"] == test


def test_skewed_and_binary_series_with_the_default_reference():
    rng = random.Random(3)
    amounts = [rng.lognormvariate(3.0, 1.0) for _ in range(6000)] + [rng.lognormvariate(3.5, 1.0) for _ in range(1000)]
    assert first_active(Drift(), amounts) == 6073
    rng = random.Random(4)
    labels = [float(rng.random() < 0.3) for _ in range(6000)] + [float(rng.random() < 0.45) for _ in range(3000)]
    assert first_active(Drift(), labels) == 6364


def test_constant_reference_then_a_new_level():
    det = Drift(reference_size=100)
    assert first_active(det, [10.0] * 150 + [50.0] * 10) == 151


def test_learning_is_quiet_and_evidence_only_when_active():
    det = Drift(reference_size=100)
    scores = run(det, gauss(5, 100, 0))
    assert not any(s.active for s in scores) and all(s.evidence == {} for s in scores)
    quiet = run(det, gauss(6, 50, 0), start=100)
    assert all(not s.active and s.evidence == {} for s in quiet)
    assert all(0.0 <= s.score < 1.0 for s in quiet)


@pytest.mark.parametrize(("kind", "step"), [("gauss", 1.0), ("lognormal", 0.1), ("binary", 60.0)])
def test_quiet_on_long_clean_streams(kind, step):
    """200k clean events, with a budget under which far less than one alarm is expected.

    Expected false alarms <= events / (rate * budget): at 1 event/s and 30 days
    200k / 2.59e6 = 0.08; at 10/s 200k / 2.59e7 = 0.008; at 1/min a 30-day budget is 43,200
    events, so this uses 3000 days: 200k / 4.32e6 = 0.05.
    """
    rng = random.Random(99)
    draw = {
        "gauss": lambda: rng.gauss(0.0, 1.0),
        "lognormal": lambda: rng.lognormvariate(0.0, 1.0),
        "binary": lambda: float(rng.random() < 0.1),
    }[kind]
    det = Drift(false_alarm_days=3000.0 if step == 60.0 else 30.0)
    alarms = sum(det.update(draw(), ts=i * step).active for i in range(200_000))
    assert alarms == 0


def test_alpha_is_one_over_tests_times_events_per_budget_period():
    """M CUSUMs test every event: alpha = 1 / (M * rate * days * 86400)."""
    stream = gauss(1, 2000, 100, mean=2.0)
    found = {}
    for step, days in ((1.0, 30.0), (0.5, 30.0), (1.0, 60.0), (0.1, 30.0)):
        det = Drift(reference_size=1000, false_alarm_days=days)
        index = first_active(det, stream, step)
        score = det.update(stream[index + 1], ts=(index + 1) * step)
        ev = score.evidence
        assert math.isclose(ev["rate_per_s"], 1.0 / step, rel_tol=0.05)
        # of the 10 CUSUMs, those for 0.25 sd are skipped: 1000 reference values cannot
        # confirm so small a shift within budget
        assert ev["tests"] == 8
        assert math.isclose(ev["alpha_per_event"], 1.0 / (ev["tests"] * ev["rate_per_s"] * days * DAY_S), rel_tol=1e-12)
        found[(step, days)] = (ev["test"], ev["shift"], ev["threshold"], index)
    # twice the events per budget period (twice the rate, or twice the days): the same
    # alarm threshold rises by about ln 2, and it takes no fewer events to confirm
    (test, shift, h1, i1), (_, _, h2, i2), (_, _, h3, i3) = found[(1.0, 30.0)], found[(0.5, 30.0)], found[(1.0, 60.0)]
    assert (test, shift) == ("mean_up", 2.0)
    assert h2 - h1 == pytest.approx(math.log(2.0), rel=0.1) and h3 == pytest.approx(h2, rel=1e-3)
    assert i1 <= i2 and i1 <= i3 <= found[(0.1, 30.0)][3]


def test_thresholds_follow_the_estimated_rate():
    det = Drift(reference_size=100)
    run(det, gauss(1, 1000, 0), step=1.0)
    slow = det.update(0.0, ts=1000.0)
    fast = Drift(reference_size=100)
    run(fast, gauss(1, 1000, 0), step=0.01)
    # same data, 100x the rate: the per-event alpha is 100x smaller, the score lower
    assert fast.update(0.0, ts=10.0).score <= slow.score


def test_fixed_reference_is_used_from_the_first_event():
    rng = random.Random(8)
    reference = tuple(rng.gauss(0.0, 1.0) for _ in range(2000))
    det = Drift(reference=reference)
    stream = [rng.gauss(0.0, 1.0) for _ in range(300)] + [rng.gauss(1.0, 1.0) for _ in range(200)]
    assert first_active(det, stream) == 350
    as_list = Drift(reference=list(reference))  # YAML gives lists
    assert as_list.reference == reference and first_active(as_list, stream) == 350


def test_reference_file_as_quantiles_with_counts():
    """A large reference summarised as (quantile, rows) pairs keeps its weight and stays small."""
    rng = random.Random(8)
    rows = sorted(rng.gauss(0.0, 1.0) for _ in range(100_000))
    pairs = tuple((float(f"{rows[i * 400 + 200]:.6g}"), 400) for i in range(250))  # as a loader would round them
    det = Drift(reference=pairs)
    stream = [rng.gauss(0.0, 1.0) for _ in range(300)] + [rng.gauss(0.25, 1.0) for _ in range(3000)]
    assert first_active(det, stream) == 576  # 0.25 sd: confirmable from 100,000 rows, not from 250
    assert first_active(Drift(reference=tuple(v for v, _ in pairs)), stream) is None
    assert len(det.state()) < 8192
    restored = Drift.restore(det.state())
    assert restored.reference == pairs and restored.update(0.3, 3300.0) == det.update(0.3, 3300.0)


def test_relearn_adapts_to_the_new_level():
    det = Drift(reference_size=200, relearn=True)
    scores = run(det, gauss(3, 400, 600, mean=3.0))
    active = [i for i, s in enumerate(scores) if s.active]
    # the alarm, then active while it learns 200 new values (the last one completes it)
    assert active == list(range(405, 405 + 200))
    assert scores[-1].score < 1.0


@pytest.mark.parametrize("cut", [50, 150, 300, 450, 1100])
def test_state_round_trip_at_every_phase(cut):
    """Learning knots, counting cells, testing, firing and relearning all restore exactly."""
    stream = gauss(4, 1000, 600, mean=1.5)
    params = {"reference_size": 400, "relearn": True, "window_size": 50}
    whole = Drift(**params)
    expected = run(whole, stream)
    first = Drift(**params)
    head = run(first, stream[:cut])
    blob = first.state()
    assert len(blob) < 8192
    restored = Drift.restore(blob)
    got = head + run(restored, stream[cut:], start=cut)
    assert [(s.score, s.active, s.value, dict(s.evidence)) for s in got] == [
        (s.score, s.active, s.value, dict(s.evidence)) for s in expected
    ]
    assert restored.report_samples() == whole.report_samples()


def test_state_stays_small_with_a_large_reference():
    det = Drift(reference_size=20_000)
    rng = random.Random(1)
    run(det, [rng.gauss(0.0, 1.0) for _ in range(25_000)])
    assert len(det.state()) < 8192
    reference, current = det.report_samples()
    assert len(reference) <= 1000 and len(current) == 200
    restored = Drift.restore(det.state())
    assert restored.update(0.5, 25_000.0) == det.update(0.5, 25_000.0)


def test_fixed_reference_round_trip_and_reset():
    reference = tuple(float(i % 17) for i in range(300))
    det = Drift(reference=reference, window_size=20)
    stream = [float(i % 17) for i in range(100)] + [float(i % 17) + 8.0 for i in range(100)]
    expected = run(Drift(reference=reference, window_size=20), stream)
    head = run(det, stream[:120])
    assert head[-1].active
    restored = Drift.restore(det.state())
    assert head + run(restored, stream[120:], start=120) == expected
    det.reset()
    assert run(det, stream) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"reference_size": 5}, "reference_size"),
        ({"reference_size": True}, "reference_size"),
        ({"reference": (1.0, 2.0)}, "at least 10"),
        ({"reference": (1.0,) * 9 + (math.nan,)}, "finite numbers or"),
        ({"reference": ((1.0, 0),) * 10}, "count >= 1"),
        ({"reference": ((1.0, 5), (2.0, 4))}, "at least 10"),
        ({"reference": "1,2,3"}, "list of numbers"),
        ({"false_alarm_days": 0}, "false_alarm_days"),
        ({"false_alarm_days": math.inf}, "false_alarm_days"),
        ({"mean_shifts_sd": (0.5, -1.0)}, "mean_shifts_sd"),
        ({"scale_ratio": 1.0}, "scale_ratio"),
        ({"mean_shifts_sd": (), "scale_ratio": None}, "nothing to watch"),
        ({"window_size": 5}, "window_size"),
        ({"relearn": "yes"}, "relearn"),
    ],
)
def test_bad_parameters_raise_detector_error(params, message):
    with pytest.raises(DetectorError, match=message):
        Drift(**params)


def test_non_finite_values_are_ignored():
    det = Drift(reference_size=10)
    run(det, [float(i) for i in range(10)])
    before = det.state()
    score = det.update(math.nan, 11.0)
    assert not score.active and det.state() == before
