"""Threshold: exact firing indices on fixed streams, every aggregation, bad parameters."""

from __future__ import annotations

import math

import pytest

from agent.errors import DetectorError
from detectors.threshold import Threshold


def first_active(det, stream, step=1.0):
    for i, x in enumerate(stream):
        if det.update(x, ts=i * step).active:
            return i
    return None


def test_last_value_compares_each_observation():
    det = Threshold(op=">", threshold=10.0)
    assert first_active(det, [1, 5, 10, 11, 2]) == 3


@pytest.mark.parametrize(
    ("op", "stream", "index"),
    [(">=", [1, 10], 1), ("<", [5, 4, 1], 2), ("<=", [5, 3], 1), ("==", [1, 3, 2], 1), ("!=", [3, 3, 4], 2)],
)
def test_every_operator(op, stream, index):
    assert first_active(Threshold(op=op, threshold=3.0 if op != "<=" else 3.0), stream) == index


def test_mean_over_window_expires_old_samples():
    det = Threshold(op=">", threshold=50.0, agg="mean", window_s=3.0)
    # window (t-3, t]: at t=4 holds 2,3,4 -> values 100,100,0 -> mean 66.7
    stream = [0, 0, 100, 100, 0, 0, 0]
    verdicts = [det.update(x, ts=float(i)).active for i, x in enumerate(stream)]
    assert verdicts == [False, False, False, True, True, False, False]


def test_p99_is_nearest_rank():
    det = Threshold(op=">", threshold=500.0, agg="p99", window_s=1000.0)
    # with 100 samples, one slow request is the 100th value and p99 is the 99th (fast);
    # the second slow one makes the 99th-ranked of 101 slow
    stream = [100.0] * 99 + [900.0, 900.0]
    assert first_active(det, stream) == 100


def test_rate_is_sum_per_second_of_window():
    det = Threshold(op=">", threshold=0.5, agg="rate", window_s=10.0)
    score = None
    for i in range(10):
        score = det.update(1.0, ts=float(i))
    assert score is not None and math.isclose(score.value, 1.0)
    assert score.active


def test_count_and_min_count():
    det = Threshold(op=">=", threshold=3, agg="count", window_s=5.0, min_count=3)
    assert first_active(det, [1, 1, 1, 1]) == 2


def test_min_count_stops_single_sample_pages():
    det = Threshold(op=">", threshold=500.0, agg="max", window_s=60.0, min_count=5)
    assert first_active(det, [900.0, 900.0, 900.0, 900.0, 900.0], step=1.0) == 4


def test_evaluate_expires_window_without_new_samples():
    det = Threshold(op=">", threshold=0.1, agg="mean", window_s=10.0)
    assert det.update(1.0, ts=0.0).active
    assert det.evaluate(5.0).active
    assert not det.evaluate(10.0).active


def test_max_samples_bounds_state():
    det = Threshold(op=">", threshold=1e9, agg="max", window_s=1e6, max_samples=100)
    for i in range(1000):
        det.update(float(i), ts=float(i))
    assert len(det._ts) == len(det._xs) == 100
    assert det.evaluate(1000.0).value == 999.0


def test_evidence_says_why():
    det = Threshold(op=">", threshold=500.0, agg="p95", window_s=60.0)
    s = det.update(900.0, ts=1.0)
    assert s.active and s.value == 900.0
    assert s.evidence == {"threshold": 500.0, "agg": "p95", "window_s": 60.0, "n": 1}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"op": "=>"}, "op '=>'"),
        ({"agg": "median"}, "agg 'median'"),
        ({"agg": "p99"}, "needs a window_s"),
        ({"agg": "mean", "window_s": -1}, "window_s"),
        ({"threshold": "high"}, "threshold must be a number"),
        ({"threshold": float("nan")}, "finite"),
        ({"min_count": 0}, "min_count"),
        ({"max_samples": 0}, "max_samples"),
    ],
)
def test_bad_parameters_raise_detector_error(params, fragment):
    with pytest.raises(DetectorError, match=fragment.replace("(", r"\(")):
        Threshold(**params)
