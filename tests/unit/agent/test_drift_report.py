"""Drift reports: an Evidently HTML file per firing drift alert, with the drift verdict in it."""

from __future__ import annotations

import random
import re

import pytest

from agent.runtime.drift_report import write_drift_report
from detectors.category_drift import CategoryDrift
from detectors.drift import Drift

# evidently and its dependencies warn about their own deprecations; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore")


def verdict(path):
    """What the report says: (drift detected, p-value of the column's drift test)."""
    html = path.read_text()
    counters = dict((label, int(v)) for v, label in re.findall(r'\{"value": "(\d+)", "label": "(\w+)"\}', html))
    score = re.search(r"Drift score is ([0-9.]+)\. The drift detection method is ([^.]+)\.", html)
    assert score is not None, "the report has no drift test"
    return counters["FAIL"] > 0, float(score.group(1))


@pytest.fixture(scope="module")
def rng():
    return random.Random(11)


def test_numeric_shift_is_reported_as_drift(tmp_path, rng):
    reference = [rng.gauss(100.0, 10.0) for _ in range(1000)]
    current = [rng.gauss(115.0, 10.0) for _ in range(200)]
    path = write_drift_report(reference, current, feature="features.amount", out_dir=tmp_path, name="AmountDrift-abc-1700000000")
    assert path == tmp_path / "AmountDrift-abc-1700000000.html"
    assert path.is_file() and "features.amount" in path.read_text()
    drifted, p_value = verdict(path)
    assert drifted and p_value < 0.05


def test_identical_samples_are_not_drift(tmp_path, rng):
    sample = [rng.gauss(0.0, 1.0) for _ in range(500)]
    path = write_drift_report(sample, list(sample[:200]), feature="prediction", out_dir=tmp_path, name="same")
    drifted, p_value = verdict(path)
    assert not drifted and p_value > 0.05


def test_categories_get_a_categorical_test(tmp_path, rng):
    reference = rng.choices(["DE", "US", "FR"], weights=[5, 3, 2], k=1000)
    current = rng.choices(["DE", "US", "FR"], weights=[2, 3, 5], k=200)
    path = write_drift_report(reference, current, feature="features.country", out_dir=tmp_path / "new", name="c")
    assert "chi-square" in path.read_text()
    assert verdict(path)[0]
    same = write_drift_report(reference, reference[:200], feature="features.country", out_dir=tmp_path, name="c2")
    assert not verdict(same)[0]


def test_detector_samples_feed_the_report(tmp_path, rng):
    det = Drift(reference_size=500)
    for i in range(700):
        det.update(rng.gauss(0.0, 1.0) if i < 600 else rng.gauss(3.0, 1.0), float(i))
    reference, current = det.report_samples()
    assert 400 <= len(reference) <= 1000 and len(current) == 200
    assert verdict(write_drift_report(reference, current, feature="x", out_dir=tmp_path, name="d"))[0]
    cat = CategoryDrift(reference_size=300, window_size=100)
    for i in range(500):
        cat.update("DE" if i < 400 else "BR", float(i))
    reference, current = cat.report_samples()
    assert set(reference) == {"DE"} and current.count("(other)") == 100
    assert verdict(write_drift_report(reference, current, feature="country", out_dir=tmp_path, name="e"))[0]


def test_names_are_made_safe_and_empty_samples_refused(tmp_path):
    path = write_drift_report([1.0, 2.0, 3.0] * 10, [1.0, 2.0] * 10, feature="f", out_dir=tmp_path, name="../a b")
    assert path.parent == tmp_path and path.name == "a_b.html"
    with pytest.raises(ValueError, match="needs both samples"):
        write_drift_report([], [1.0], feature="f", out_dir=tmp_path, name="x")
