"""GpuPressure: exact first-firing indices per signal on seeded streams, quiet on clean
ones, memory leaks warned about before the frame buffer is full, bad parameters, state."""

from __future__ import annotations

import math
import random

import pytest

from agent.errors import DetectorError
from detectors.gpu_pressure import GpuPressure


def noisy(seed: int, n: int, clean: float, sd: float, *, fault_at: int | None = None, faulty: float = 0.0,
          low: float = -math.inf, high: float = math.inf) -> list[float]:
    """``clean`` plus Gaussian noise, shifting to ``faulty`` from ``fault_at`` on, clipped."""
    rng = random.Random(seed)
    level = [faulty if fault_at is not None and i >= fault_at else clean for i in range(n)]
    return [min(high, max(low, rng.gauss(m, sd))) for m in level]


def leak(seed: int, *, start_s: float, full_s: float, step_s: float = 0.0, base: float = 0.35,
         n: int, every_s: float = 10.0, sd: float = 0.005) -> list[tuple[float, float, float]]:
    """(ts, observed, true) memory ratios: flat at ``base``, then rising to 1.0 at ``full_s``,
    linearly, or in steps every ``step_s`` seconds."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = i * every_s
        grown = max(0.0, t - start_s)
        if step_s:
            grown = math.floor(grown / step_s) * step_s
        true = min(1.0, base + (1.0 - base) * grown / (full_s - start_s))
        out.append((t, min(1.0, max(0.0, true + rng.gauss(0.0, sd))), true))
    return out


def first_active(det, stream, step_s=1.0):
    for i, x in enumerate(stream):
        if det.update(x, ts=i * step_s).active:
            return i
    return None


# (params, generator arguments, exact first index with seed 1)
CASES = {
    "saturation": ({"signal": "saturation", "sustain_s": 30.0}, {"clean": 60, "sd": 1.5, "faulty": 97, "low": 0, "high": 100}, 130),
    "thermal": ({"signal": "thermal", "sustain_s": 60.0}, {"clean": 70, "sd": 1.0, "faulty": 88}, 160),
    "power": ({"signal": "power", "power_cap_w": 390.0, "sustain_s": 60.0}, {"clean": 250, "sd": 3.0, "faulty": 400}, 160),
    "slowdown": ({"signal": "slowdown"}, {"clean": 100, "sd": 5.0, "faulty": 150}, 201),
}


@pytest.mark.parametrize("signal", sorted(CASES))
def test_first_firing_index(signal):
    params, gen, index = CASES[signal]
    fault_at = 200 if signal == "slowdown" else 100
    stream = noisy(1, 300, fault_at=fault_at, **gen)
    assert first_active(GpuPressure(**params), stream) == index


@pytest.mark.parametrize("signal", sorted(CASES))
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_quiet_on_clean_streams_from_the_same_generator(signal, seed):
    params, gen, _ = CASES[signal]
    gen = {**gen, "sd": gen["sd"] * 2}  # noisier than the faulty runs, still clean
    assert first_active(GpuPressure(**params), noisy(seed, 1000, **gen)) is None


def test_one_sample_below_the_limit_starts_the_count_again():
    det = GpuPressure(signal="saturation", saturation_pct=90.0, sustain_s=30.0)
    stream = [95.0] * 20 + [80.0] + [95.0] * 40
    assert first_active(det, stream) == 51
    score = det.update(95.0, ts=61.0)
    assert dict(score.evidence) == {"signal": "saturation", "limit": 90.0, "held_s": 40.0, "sustain_s": 30.0}
    assert (score.score, score.value) == (1.0, 95.0)


def test_level_score_is_the_share_of_sustain_held():
    det = GpuPressure(signal="thermal", throttle_temp_c=85.0, sustain_s=100.0)
    assert det.update(80.0, ts=0.0).score == 0.0
    det.update(90.0, ts=10.0)
    score = det.update(91.0, ts=35.0)
    assert (score.score, score.active) == (0.25, False)
    assert score.evidence == {}


def test_xid_pages_at_once_and_says_whether_the_code_is_new():
    det = GpuPressure(signal="xid")
    stream = [0.0] * 50 + [79.0] * 3 + [0.0]
    verdicts = [det.update(x, ts=float(i)) for i, x in enumerate(stream)]
    assert next(i for i, s in enumerate(verdicts) if s.active) == 50
    assert [dict(s.evidence) for s in verdicts[50:52]] == [
        {"signal": "xid", "xid": 79, "new": True},
        {"signal": "xid", "xid": 79, "new": False},
    ]
    assert not verdicts[-1].active


def test_slowdown_ignores_lone_spikes_and_keeps_its_baseline_through_a_long_straggle():
    det = GpuPressure(signal="slowdown", slowdown_ratio=1.2)
    rng = random.Random(3)
    stream = [rng.gauss(400.0, 8.0) for _ in range(100)]
    for i in (60, 75, 90):
        stream[i] = 900.0  # one slow mini-batch now and then
    stream += [rng.gauss(700.0, 8.0) for _ in range(200)]  # a straggler, for long
    verdicts = [det.update(x, ts=float(i)) for i, x in enumerate(stream)]
    flagged = [i for i, s in enumerate(verdicts) if s.active]
    assert flagged == list(range(101, 300))
    last = verdicts[-1]
    assert 390.0 < last.evidence["baseline"] < 410.0 and last.evidence["ratio"] > 1.6
    assert last.evidence["baseline_n"] == 64 and last.evidence["slowdown_ratio"] == 1.2


def test_slowdown_waits_for_half_its_baseline():
    det = GpuPressure(signal="slowdown", baseline_n=16, recent_n=1)
    verdicts = [det.update(x, ts=float(i)) for i, x in enumerate([100.0] * 6 + [500.0] * 4)]
    # quiet until 8 samples are in (the 8th is learnt even though slow), then slow at once
    assert [s.active for s in verdicts] == [False] * 7 + [True] * 3


# --- memory ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step_s", "index"),
    [(0.0, 1026), (300.0, 1030)],
    ids=["linear", "stepwise"],
)
def test_memory_leak_is_forecast_before_the_frame_buffer_is_full(step_s, index):
    # flat at 0.35 for 20 minutes, then full 3 hours later; a sample every 10 s
    stream = leak(7, start_s=1200.0, full_s=12_000.0, step_s=step_s, n=1300)
    det = GpuPressure(signal="memory")
    first = next(i for i, (t, x, _) in enumerate(stream) if det.update(x, ts=t).active)
    assert first == index
    t, x, true = stream[first]
    score = det.update(x, ts=t)  # same verdict on the same sample
    assert score.evidence["reason"] == "forecast" and true < 0.95 - 0.04
    assert score.evidence["tte_s"] <= 1800.0
    lead_s = 12_000.0 - t
    assert 1500.0 < lead_s < 3000.0
    assert set(score.evidence) == {
        "signal", "reason", "headroom_ratio", "min_headroom_ratio", "tte_s", "horizon_s", "slope_per_s", "window_s",
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("level", [0.3, 0.6, 0.85])
def test_memory_quiet_on_flat_noisy_usage(seed, level):
    det = GpuPressure(signal="memory")
    stream = noisy(seed, 4000, level, 0.01, low=0.0, high=1.0)
    assert first_active(det, stream, step_s=10.0) is None


def test_memory_single_step_is_not_a_leak():
    det = GpuPressure(signal="memory")
    stream = [0.3] * 200 + [0.85] * 800  # a model loads, and stays
    assert first_active(det, stream, step_s=10.0) is None


def test_memory_headroom_floor_fires_on_the_median_of_three():
    det = GpuPressure(signal="memory", min_headroom_ratio=0.05)
    stream = [0.5] * 10 + [0.99] + [0.5] * 2 + [0.97] * 5  # a lone spike, then for real
    verdicts = [det.update(x, ts=float(i)) for i, x in enumerate(stream)]
    assert [i for i, s in enumerate(verdicts) if s.active] == [14, 15, 16, 17]
    assert verdicts[14].evidence["reason"] == "headroom"
    assert math.isclose(verdicts[14].evidence["headroom_ratio"], 0.03)


def test_memory_forecast_counts_down_in_evaluate_without_changing_state():
    det = GpuPressure(signal="memory", window_s=120.0, horizon_s=300.0)
    for i in range(200):
        det.update(0.2 + 0.001 * i, ts=float(i))  # 0.1 % a second: full at t=800
    before = det.state()
    early, later = det.evaluate(200.0), det.evaluate(550.0)
    assert det.state() == before
    assert not early.active and early.score == pytest.approx(0.5, abs=0.02)  # ~600 s left, horizon 300 s
    assert later.active and later.evidence["tte_s"] == pytest.approx(250.0, abs=10.0)


def test_level_evaluate_counts_time_held_without_new_samples():
    det = GpuPressure(signal="saturation", sustain_s=60.0)
    assert not det.evaluate(0.0).active
    det.update(99.0, ts=0.0)
    assert not det.evaluate(59.0).active
    assert det.evaluate(60.0).active
    assert not det.update(10.0, ts=61.0).active and not det.evaluate(500.0).active


# --- parameters and state --------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"signal": "fan"}, "signal 'fan' is not one of"),
        ({"saturation_pct": 0}, "saturation_pct must be > 0"),
        ({"saturation_pct": 101}, "saturation_pct must be <= 100"),
        ({"saturation_pct": True}, "saturation_pct must be a finite number"),
        ({"sustain_s": -1}, "sustain_s must be >= 0"),
        ({"signal": "thermal", "throttle_temp_c": math.nan}, "throttle_temp_c must be a finite number"),
        ({"signal": "power"}, "needs power_cap_w"),
        ({"signal": "power", "power_cap_w": 0}, "power_cap_w must be > 0"),
        ({"signal": "memory", "min_headroom_ratio": 1.0}, "min_headroom_ratio must be < 1"),
        ({"signal": "memory", "window_s": 0}, "window_s must be > 0"),
        ({"signal": "memory", "horizon_s": "30m"}, "horizon_s must be a finite number"),
        ({"signal": "slowdown", "slowdown_ratio": 1.0}, "slowdown_ratio must be > 1"),
        ({"signal": "slowdown", "baseline_n": 1000}, "baseline_n must be an integer from 4 to 256"),
        ({"signal": "slowdown", "recent_n": 100}, "recent_n must be an integer from 1 to 64"),
        ({"signal": "memory", "sustain_s": 60}, "sustain_s does not apply to signal 'memory'"),
        ({"signal": "xid", "saturation_pct": 50}, "saturation_pct does not apply to signal 'xid' (it reads no other"),
    ],
)
def test_bad_parameters_raise_detector_error(params, message):
    with pytest.raises(DetectorError, match=message.replace("(", r"\(")):
        GpuPressure(**params)


STATE_CASES = {
    "saturation": ({"signal": "saturation", "sustain_s": 30.0}, noisy(4, 300, 60, 2, fault_at=120, faulty=97, high=100)),
    "memory": ({"signal": "memory", "window_s": 120.0, "horizon_s": 600.0}, [x for _, x in GpuPressure._unit_test_stream(4)]),
    "xid": ({"signal": "xid"}, [0.0] * 100 + [13.0] * 5 + [0.0] * 95 + [31.0] * 100),
    "slowdown": ({"signal": "slowdown"}, noisy(4, 300, 100, 5, fault_at=150, faulty=140)),
}


@pytest.mark.parametrize("signal", sorted(STATE_CASES))
def test_state_round_trip_continues_identically(signal):
    params, stream = STATE_CASES[signal]
    whole = GpuPressure(**params)
    expected = [whole.update(x, float(i)) for i, x in enumerate(stream)]
    head = GpuPressure(**params)
    for i, x in enumerate(stream[:170]):
        head.update(x, float(i))
    blob = head.state()
    assert len(blob) < 8192
    restored = GpuPressure.restore(blob)
    assert restored.params() == head.params()
    got = [restored.update(x, float(i)) for i, x in enumerate(stream) if i >= 170]
    assert got == expected[170:]
    assert any(s.active for s in expected)


def test_state_stays_small_at_the_largest_baseline():
    det = GpuPressure(signal="slowdown", baseline_n=256)
    rng = random.Random(0)
    for i in range(2000):
        det.update(rng.uniform(100.0, 1000.0) / 3.0, ts=float(i))
    assert len(det.state()) < 8192
