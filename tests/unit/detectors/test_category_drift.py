"""CategoryDrift: exact firing indices on seeded mixes, quiet clean streams, the time budget, checkpoints."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import chi2

from agent.errors import DetectorError
from detectors.category_drift import CategoryDrift

DAY_S = 86_400.0
COUNTRIES = ["DE", "US", "FR"]


def first_active(det, stream, step=1.0):
    for i, x in enumerate(stream):
        score = det.update(x, ts=i * step)
        if score.active:
            return i, score
    return None, None


def run(det, stream, step=1.0, start=0):
    return [det.update(x, ts=(start + i) * step) for i, x in enumerate(stream)]


def mix_change(seed, before=6000, after=1000):
    rng = random.Random(seed)
    return rng.choices(COUNTRIES, weights=[5, 3, 2], k=before) + rng.choices(COUNTRIES, weights=[2, 3, 5], k=after)


def test_mix_change_fires_at_known_index():
    index, score = first_active(CategoryDrift(), mix_change(5))
    assert index == 6085
    ev = score.evidence
    assert ev["df"] == 3 and ev["window_size"] == 200 and ev["reference_n"] == 5000
    assert ev["statistic"] >= ev["threshold"] and ev["p_value"] < ev["alpha_per_test"]
    assert ev["reference_top"].startswith("DE 50%, US 30%, FR 19%") and ev["current_top"].startswith("FR 36%, DE 36%")
    assert score.value == pytest.approx(ev["distance_tv"]) and 0.1 < score.value < 0.3


def test_a_new_category_fires_fast_through_the_other_cell():
    rng = random.Random(6)
    four = ["DE", "US", "FR", "IT"]
    base = rng.choices(four, weights=[4, 3, 2, 1], k=6000)
    new = ["BR" if rng.random() < 0.2 else x for x in rng.choices(four, weights=[4, 3, 2, 1], k=1000)]
    index, score = first_active(CategoryDrift(), base + new)
    assert index == 6013
    assert "(other) 2%" in score.evidence["current_top"]


def test_constant_category_then_another():
    index, _ = first_active(CategoryDrift(reference_size=100, window_size=50), ["DE"] * 150 + ["US"] * 50)
    assert index == 157


def test_many_categories_fold_into_other():
    cats = [f"c{k}" for k in range(30)]
    rng = random.Random(7)
    stream = rng.choices(cats, weights=[1 / k for k in range(1, 31)], k=6000)
    stream += rng.choices(cats, weights=[1 / k for k in range(30, 0, -1)], k=1000)
    index, score = first_active(CategoryDrift(max_categories=4), stream)
    assert index == 6077
    assert score.evidence["df"] == 3 and score.evidence["reference_top"].startswith("(other) 53%, c0 26%")


@pytest.mark.parametrize(
    ("name", "cats", "weights"),
    [
        ("three", COUNTRIES, [5, 3, 2]),
        ("rare", ["ok", "error"], [999, 1]),
        ("zipf-300", [f"c{k}" for k in range(300)], [1 / k**1.1 for k in range(1, 301)]),
    ],
)
def test_quiet_on_long_clean_streams(name, cats, weights):
    """200k clean events at 1 event/s: 2.3 days of a 30-day budget, 0.08 expected false alarms."""
    stream = random.Random(42).choices(cats, weights=weights, k=200_000)
    det = CategoryDrift()
    assert not any(s.active for s in run(det, stream))


@pytest.mark.parametrize(("step", "days"), [(1.0, 30.0), (0.1, 30.0), (1.0, 7.0), (60.0, 365.0)])
def test_alpha_is_one_test_per_event_of_the_budget_period(step, days):
    """One test per event: alpha = 1 / (rate * days * 86400), threshold = chi2.isf(alpha, df)."""
    det = CategoryDrift(false_alarm_days=days)
    _, score = first_active(det, mix_change(5, after=3000), step)
    ev = score.evidence
    assert ev["rate_per_s"] == pytest.approx(1.0 / step, rel=0.05)
    alpha = 1.0 / (ev["rate_per_s"] * days * DAY_S)
    assert ev["alpha_per_test"] == pytest.approx(alpha, rel=1e-12)
    assert ev["threshold"] == pytest.approx(chi2.isf(alpha, ev["df"]), rel=1e-6)


def test_fixed_reference_counts():
    reference = (("DE", 500), ("US", 300), ("FR", 200))
    det = CategoryDrift(reference=reference, window_size=100)
    stream = mix_change(9, before=300, after=300)
    index, _ = first_active(det, stream)
    assert index == 379
    as_lists = CategoryDrift(reference=[["DE", 500], ["US", 300], ["FR", 200], ["IT", 0]], window_size=100)
    assert as_lists.reference == reference + (("IT", 0),) and first_active(as_lists, stream)[0] == index


@pytest.mark.parametrize("cut", [50, 120, 400, 500])
def test_state_round_trip_at_every_phase(cut):
    stream = mix_change(10, before=400, after=200)
    params = {"reference_size": 300, "window_size": 60}
    whole = CategoryDrift(**params)
    expected = run(whole, stream)
    assert any(s.active for s in expected)
    first = CategoryDrift(**params)
    head = run(first, stream[:cut])
    blob = first.state()
    assert len(blob) < 8192
    restored = CategoryDrift.restore(blob)
    got = head + run(restored, stream[cut:], start=cut)
    assert got == expected
    assert restored.report_samples() == whole.report_samples()


def test_round_trip_with_rare_categories_folded():
    cats = [f"c{k}" for k in range(300)]
    rng = random.Random(13)
    stream = rng.choices(cats, weights=[1 / k for k in range(1, 301)], k=1500)
    stream += rng.choices(cats, weights=[1 / k for k in range(300, 0, -1)], k=300)
    params = {"reference_size": 1000, "max_categories": 6, "window_size": 100}
    expected = run(CategoryDrift(**params), stream)
    assert any(s.active for s in expected)
    det = CategoryDrift(**params)
    head = run(det, stream[:1200])
    restored = CategoryDrift.restore(det.state())
    assert head + run(restored, stream[1200:], start=1200) == expected


def test_fixed_reference_round_trip_and_reset():
    reference = (("DE", 500), ("US", 300), ("FR", 200))
    stream = mix_change(11, before=200, after=200)
    expected = run(CategoryDrift(reference=reference, window_size=50), stream)
    det = CategoryDrift(reference=reference, window_size=50)
    head = run(det, stream[:300])
    restored = CategoryDrift.restore(det.state())
    assert head + run(restored, stream[300:], start=300) == expected
    det.reset()
    assert run(det, stream) == expected


def test_report_samples_are_bounded():
    det = CategoryDrift()
    run(det, mix_change(12, before=6000, after=500))
    reference, current = det.report_samples()
    assert 990 <= len(reference) <= 1010 and len(current) == 200
    assert set(reference) == set(COUNTRIES)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"reference_size": 9}, "reference_size"),
        ({"reference": (("DE", 5),)}, "at least 10"),
        ({"reference": ("DE", "US")}, "pairs"),
        ({"reference": (("DE", -1), ("US", 20))}, "non-negative"),
        ({"reference": (("DE", 10), ("DE", 20))}, "twice"),
        ({"false_alarm_days": -1.0}, "false_alarm_days"),
        ({"false_alarm_days": math.nan}, "false_alarm_days"),
        ({"window_size": 1}, "window_size"),
        ({"max_categories": 1}, "max_categories"),
    ],
)
def test_bad_parameters_raise_detector_error(params, message):
    with pytest.raises(DetectorError, match=message):
        CategoryDrift(**params)
