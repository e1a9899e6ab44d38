"""score_drop: a falling bounded score is found from few events; clean low-volume feedback
stays quiet within the time budget; the baseline learns only from held-out scores."""

from __future__ import annotations

import random

import pytest

from agent.errors import DetectorError
from detectors.score_drop import ScoreDrop

HOUR = 3600.0


def thumbs(rng: random.Random, up: float) -> float:
    return 1.0 if rng.random() < up else -1.0


@pytest.mark.parametrize("seed", range(5))
def test_quiet_on_thirty_days_of_healthy_feedback_at_ten_an_hour(seed):
    rng = random.Random(seed)
    det = ScoreDrop(prior_mean=0.5)
    alarms = sum(det.update(thumbs(rng, 0.75), i * 360.0).active for i in range(7200))
    assert alarms == 0


def test_a_drop_at_ten_ratings_an_hour_pages_within_four_hours():
    rng = random.Random(11)
    det = ScoreDrop(prior_mean=0.5)
    for i in range(240):  # a day of healthy ratings
        assert not det.update(thumbs(rng, 0.75), i * 360.0).active
    first = next(j for j in range(200) if det.update(thumbs(rng, 0.3), (240 + j) * 360.0).active)
    assert first * 360.0 <= 4 * HOUR  # about 35 ratings; a windowed mean needs far more
    score = det.update(-1.0, (240 + first + 1) * 360.0)
    assert score.active and score.evidence["baseline_mean"] > 0.3 and score.evidence["recent_mean"] < 0.0


def test_a_new_version_bad_from_its_first_rating_is_compared_with_the_prior():
    det = ScoreDrop(prior_mean=0.5, prior_weight=20)
    first = next(i for i in range(100) if det.update(-1.0, i * 360.0).active)
    assert first < 20


def test_the_baseline_learns_only_held_out_scores():
    det = ScoreDrop(prior_mean=0.5, holdout_s=HOUR)
    for i in range(30):
        det.update(-1.0, i * 60.0)  # 30 minutes of bad ratings: still held out
    assert det._weight == 0.0  # noqa: SLF001
    det.update(1.0, 2 * HOUR)
    assert det._weight == pytest.approx(30.0, rel=1e-2)  # noqa: SLF001 - faded by an hour of a week-long half-life


def test_a_steady_lower_level_becomes_the_baseline_and_goes_quiet():
    rng = random.Random(3)
    det = ScoreDrop(prior_mean=0.5, holdout_s=HOUR)
    verdicts = [det.update(thumbs(rng, 0.5), i * 120.0).active for i in range(3000)]
    assert not any(verdicts[-1000:])  # the baseline learned 50 % up as this series' normal


def test_pending_scores_are_bounded():
    det = ScoreDrop(max_pending=10, holdout_s=10 * HOUR)
    for i in range(100):
        det.update(1.0, float(i))
    assert len(det._pending) == 10  # noqa: SLF001


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"low": 1.0, "high": 0.0}, "low and high"),
        ({"prior_mean": 2.0}, "prior_mean"),
        ({"prior_weight": 0}, "prior_weight"),
        ({"drop": 0}, "drop"),
        ({"drop": 5}, "drop"),
        ({"holdout_s": -1}, "holdout_s"),
        ({"false_alarm_days": -1}, "false_alarm_days"),
        ({"max_pending": 0}, "max_pending"),
    ],
)
def test_bad_parameters_fail_at_load_time(params, fragment):
    with pytest.raises(DetectorError, match=fragment):
        ScoreDrop(**params)
