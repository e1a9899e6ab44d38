"""The sequential detector: how many events a step takes to detect, how long clean data stays
quiet, and what its verdict says. Streams are seeded; every count is in events, never wall time."""

from __future__ import annotations

import math
import random

import pytest

from agent.errors import DetectorError
from detectors.sequential import Sequential

_WARM = 30_000  # events of clean baseline before a fault (5 minutes at 100 events/s)


def _latency(rng: random.Random, factor: float = 1.0) -> float:
    """Log-normal latency with median 15 ms and p99 about 48 ms (sigma 0.5), times ``factor``."""
    return rng.lognormvariate(math.log(15.0), 0.5) * factor


def _first_active(det: Sequential, stream: list[tuple[float, float]]) -> int | None:
    return next((i for i, (ts, x) in enumerate(stream) if det.update(x, ts).active), None)


def _latency_step(rate: float, factor: float, seed: int, after: int = 2000) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    warm = int(max(_WARM / 100 * rate, 600))
    return [(i / rate, _latency(rng, factor if i >= warm else 1.0)) for i in range(warm + after)], warm  # type: ignore[return-value]


def _expected_events(h: float, p0: float, p1: float, p: float) -> float:
    """Wald's approximation of a CUSUM's delay: h over the expected evidence per event."""
    kl = p * math.log(p1 / p0) + (1 - p) * math.log((1 - p1) / (1 - p0))
    return h / kl


@pytest.mark.parametrize("seed", range(5))
def test_a_tenfold_latency_step_at_100_per_s_is_found_within_a_dozen_events(seed: int) -> None:
    stream, warm = _latency_step(100.0, 10.0, seed)
    det = Sequential()
    first = _first_active(det, stream[: warm + 200])
    assert first is not None and warm <= first
    delay = first - warm + 1
    # h = ln(2 * 30 d * 86400 * 100/s) = 20.1 nats; the 16x test (p1 = 0.8) gains ln(16) per slow request
    assert delay <= math.ceil(math.log(2 * 30 * 86400 * 100) / math.log(16)) + 2
    evidence = det.update(_latency(random.Random(seed), 10.0), stream[first][0] + 0.01).evidence
    assert evidence["events"] <= delay + 2  # the change-point estimate lands at the step
    assert 100.0 < evidence["level"] < 250.0  # geometric mean of 10 x 15 ms
    assert 13.0 < evidence["baseline"] < 17.0 and 30.0 < evidence["limit"] < 40.0
    assert evidence["threshold"] == pytest.approx(math.log(2 * 30 * 86400 * 100), abs=0.1)
    assert evidence["statistic"] == pytest.approx(evidence["threshold"])


@pytest.mark.parametrize("seed", range(5))
def test_errors_from_half_a_percent_to_twenty_percent_at_100_per_s(seed: int) -> None:
    rng = random.Random(seed)
    stream = [(i / 100, float(rng.random() < (0.005 if i < _WARM else 0.2))) for i in range(_WARM + 1000)]
    det = Sequential(model="indicator")
    first = _first_active(det, stream)
    assert first is not None and first >= _WARM
    design = det._design  # noqa: SLF001 - what the test was designed with
    h, p0 = design["h"], design["p0"]
    expected = _expected_events(h, p0, design["p1"][1], 0.2)
    assert 0.004 <= p0 < 0.009  # 0.5 % and the Wilson margin of 5 minutes of traffic
    assert first - _WARM + 1 <= 2.5 * expected  # ~40 events expected; a CUSUM's delay is noisy
    evidence = det.update(1.0, stream[first][0]).evidence
    assert 0.1 < evidence["level"] < 0.6 and evidence["baseline"] == pytest.approx(0.005, abs=0.002)


def _median_delay_events(rate: float, factor: float) -> float:
    delays = []
    for seed in range(7):
        stream, warm = _latency_step(rate, factor, seed, after=3000)
        first = _first_active(Sequential(), stream)
        assert first is not None and first >= warm, (rate, factor, seed)
        delays.append(first - warm + 1)
    return sorted(delays)[3]


def test_delay_shrinks_as_the_fault_grows_and_in_seconds_as_traffic_grows() -> None:
    by_size = [_median_delay_events(100.0, f) for f in (1.6, 2.5, 10.0)]
    assert by_size[0] > by_size[1] > by_size[2], by_size
    slow_traffic = _median_delay_events(1.0, 10.0)  # h = 15.5 nats: fewer events, but a second each
    assert slow_traffic <= by_size[2]
    assert slow_traffic / 1.0 > 10 * by_size[2] / 100.0  # seconds: 1 event/s is far slower to page


@pytest.mark.parametrize("model", ["tail", "indicator"])
def test_quiet_on_clean_data_for_the_budgeted_time_at_the_seeded_rate(model: str) -> None:
    # one event a minute for 30 days (43,200 events) with the default budget of one false
    # page per 30 days; the bound e**h / k is conservative, so no page is expected
    rng = random.Random(11)
    det = Sequential(model=model, min_baseline_s=0.0)
    draw = (lambda: _latency(rng)) if model == "tail" else (lambda: float(rng.random() < 0.005))
    pages = sum(det.update(draw(), 60.0 * i).active for i in range(30 * 1440))
    assert pages == 0


@pytest.mark.parametrize("model", ["tail", "indicator"])
def test_false_alarm_rate_stays_within_a_shorter_budget(model: str) -> None:
    # 10 events/s for 6 hours (216,000 events) against a budget of one false alarm per
    # hour: the ARL bound allows at most ~6 alarms; onsets of activity are counted
    rng = random.Random(5)
    det = Sequential(model=model, false_alarm_days=1 / 24, min_baseline_s=60.0, half_life_s=600.0)
    draw = (lambda: _latency(rng)) if model == "tail" else (lambda: float(rng.random() < 0.02))
    onsets, was = 0, False
    for i in range(216_000):
        now = det.update(draw(), i / 10.0).active
        onsets += now and not was
        was = now
    assert onsets <= 6


def test_stays_active_through_the_fault_and_clears_when_back() -> None:
    rng = random.Random(3)
    det = Sequential()
    for i in range(_WARM):
        det.update(_latency(rng), i / 100)
    fault = [det.update(_latency(rng, 10.0), (_WARM + i) / 100).active for i in range(3000)]
    first = fault.index(True)
    assert all(fault[first:]), "the verdict holds for as long as the series is slow"
    back = [det.update(_latency(rng), (_WARM + 3000 + i) / 100).active for i in range(500)]
    cleared = back.index(False)
    # ln(100) = 4.6 nats at ~0.1 nats per fast request (the 4x test, p1 = 0.2): ~50 events
    assert cleared <= 120 and not any(back[cleared:])


def test_no_verdict_before_the_baseline_is_learned() -> None:
    # one request a second: 100 clean, then 10 s of gross slowness; the baseline needs 300
    # events over 300 s, so the cold start never pages (the threshold rules cover it)...
    det = Sequential(min_baseline_count=300, min_baseline_s=300.0)
    rng = random.Random(4)
    cold = [det.update(_latency(rng, 100.0 if 100 <= i < 110 else 1.0), float(i)) for i in range(400)]
    assert not any(v.active for v in cold[:300]) and all(v.score == 0.0 for v in cold[:300])
    assert not any(v.active for v in cold[300:])
    # ... and once learned, the same fault pages within a few events
    warm = [det.update(_latency(rng, 100.0), 400.0 + i).active for i in range(20)]
    assert True in warm and warm.index(True) < 10


def test_a_near_zero_error_ratio_is_floored() -> None:
    rng = random.Random(2)
    det = Sequential(model="indicator", min_ratio=0.001)
    for i in range(_WARM):
        det.update(0.0, i / 100)
    # three errors in a row on a service that never failed: well short of a page
    assert not any(det.update(1.0, (_WARM + i) / 100).active for i in range(3))
    assert det._design["p0"] >= 0.001  # noqa: SLF001
    del rng


def test_non_finite_values_are_ignored() -> None:
    det = Sequential(min_baseline_count=1, min_baseline_s=0.0)
    for value in (math.nan, math.inf, -math.inf):
        verdict = det.update(value, 1.0)
        assert not verdict.active and verdict.score == 0.0
    assert det._base.count == 0  # noqa: SLF001


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "gauss"}, "model must be one of tail, indicator"),
        ({"quantile": 1.0}, "quantile must be a number in"),
        ({"factors": ()}, "factors must be a non-empty list"),
        ({"factors": (1.0,)}, "factors must be a number in"),
        ({"false_alarm_days": 0}, "false_alarm_days must be a number in"),
        ({"half_life_s": -1}, "half_life_s must be a number in"),
        ({"min_baseline_count": 0}, "min_baseline_count must be an integer >= 1"),
        ({"min_ratio": True}, "min_ratio must be a number in"),
    ],
)
def test_bad_parameters_fail_at_load_time(params: dict, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        Sequential(**params)
