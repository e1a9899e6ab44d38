"""Drift references from a file (read by the rules loader) and from a named window of event time."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.rules import load_rules
from agent.rules.reference import MAX_PAIRS, ReferenceFileError, load_reference, quantile_pairs
from detectors.category_drift import CategoryDrift
from detectors.drift import Drift

TESTDATA = Path(__file__).parents[2] / "rules" / "testdata"
T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z
WEEK = [T0, T0 + 7 * 86_400.0]


def _rule(name: str):
    rules = load_rules([TESTDATA / "drift_reference_file.good.yaml"])
    return next(r for r in rules.rules if r.name == name)


def _first_active(detector, values, t0: float = 0.0, step: float = 1.0) -> int | None:
    for i, x in enumerate(values):
        if detector.update(x, t0 + i * step).active:
            return i
    return None


def test_a_reference_file_is_summarised_at_load_and_fires_only_on_the_shifted_stream() -> None:
    rule = _rule("AmountDrift")
    pairs = rule.detector_params["reference"]
    assert len(pairs) <= MAX_PAIRS and sum(c for _, c in pairs) == 500  # the file's rows, their full weight
    rng = random.Random(5)
    same = Drift(**rule.detector_params)  # from the first event: no learning period
    assert _first_active(same, [rng.gauss(100, 10) for _ in range(3000)]) is None
    shifted = Drift(**rule.detector_params)
    first = _first_active(shifted, [rng.gauss(115, 10) for _ in range(500)])
    assert first is not None and first < 100
    verdict = shifted.update(115.0, 600.0)
    assert verdict.active and verdict.evidence["reference_source"].startswith("fixed")
    assert verdict.evidence["reference_n"] == 500


def test_a_reference_file_of_categories_counts_them() -> None:
    rule = _rule("CountryMixDrift")
    counts = dict(rule.detector_params["reference"])
    assert set(counts) == {"DE", "US", "FR"} and sum(counts.values()) == 500
    rng = random.Random(5)
    same = CategoryDrift(**rule.detector_params)
    assert _first_active(same, rng.choices(["DE", "US", "FR"], [6, 3, 1], k=3000)) is None
    moved = CategoryDrift(**rule.detector_params)
    assert _first_active(moved, rng.choices(["DE", "US", "FR"], [1, 3, 6], k=1000)) is not None


def test_a_jsonl_reference_reads_the_rule_field_from_events() -> None:
    rule = _rule("PredictionDrift")
    assert sum(c for _, c in rule.detector_params["reference"]) == 300
    assert all(0.0 <= v <= 1.0 for v, _ in rule.detector_params["reference"])


def test_quantile_pairs_are_bounded_and_keep_the_weight() -> None:
    rng = random.Random(1)
    values = [rng.lognormvariate(0, 1) for _ in range(100_000)]
    pairs = quantile_pairs(values)
    assert len(pairs) == MAX_PAIRS and sum(c for _, c in pairs) == 100_000
    ordered = sorted(values)
    assert pairs[127][0] == pytest.approx(ordered[50_000], rel=0.02)  # the median slice stands at the median
    assert [v for v, _ in pairs] == sorted(v for v, _ in pairs)


def test_load_reference_rejects_too_many_categories(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("user\n" + "".join(f"u{i}\n" for i in range(5000)))
    with pytest.raises(ReferenceFileError, match="5000 distinct categories"):
        load_reference(path, field="features.user", categorical=True)


def test_load_reference_needs_ten_values(tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text("1\n2\nnull\n3\n")
    with pytest.raises(ReferenceFileError, match="has 3 values"):
        load_reference(path, field="prediction")


# --- the named window ------------------------------------------------------------------


def _drift_stream(rng: random.Random) -> list[tuple[float, float]]:
    """Before the window: another level (ignored); in it: N(100, 10); after: the same, then +3 sd."""
    before = [(T0 - 600 + i * 10, rng.gauss(300, 10)) for i in range(60)]
    inside = [(T0 + i * 600, rng.gauss(100, 10)) for i in range(1008)]  # a week, every 10 minutes
    after = [(WEEK[1] + i * 600, rng.gauss(100, 10)) for i in range(500)]
    shifted = [(WEEK[1] + (500 + i) * 600, rng.gauss(130, 10)) for i in range(100)]
    return before + inside + after + shifted


def test_a_named_window_is_the_reference_and_earlier_events_are_not_learned() -> None:
    stream = _drift_stream(random.Random(3))
    det = Drift(reference_window=WEEK)
    verdicts = [det.update(x, ts) for ts, x in stream]
    assert not any(v.active for v in verdicts[: 60 + 1008 + 500])
    first = next(i for i, v in enumerate(verdicts) if v.active)
    assert 60 + 1008 + 500 <= first < 60 + 1008 + 500 + 20
    evidence = verdicts[first].evidence
    assert evidence["reference_n"] == 1008
    assert evidence["reference_source"] == "window 2026-11-02T00:00:00Z to 2026-11-09T00:00:00Z"
    assert evidence["reference_mean"] == pytest.approx(100, abs=2)


def test_a_window_that_passed_unseen_falls_back_to_the_first_events() -> None:
    rng = random.Random(4)
    det = Drift(reference_window=WEEK, reference_size=200)
    late = WEEK[1] + 3600
    stream = [(late + i, rng.gauss(100, 10)) for i in range(600)] + [(late + 600 + i, rng.gauss(140, 10)) for i in range(50)]
    verdicts = [det.update(x, ts) for ts, x in stream]
    first = next(i for i, v in enumerate(verdicts) if v.active)
    assert first >= 600
    assert verdicts[first].evidence["reference_source"] == "first 200 events (the reference window had passed)"


@pytest.mark.parametrize("cut", [30, 500, 60 + 1008 + 10])  # before, inside and just after the window
def test_a_checkpoint_continues_identically(cut: int) -> None:
    stream = _drift_stream(random.Random(6))
    whole = Drift(reference_window=WEEK)
    expected = [tuple(whole.update(x, ts)[:3]) for ts, x in stream]
    head = Drift(reference_window=WEEK)
    got = [tuple(head.update(x, ts)[:3]) for ts, x in stream[:cut]]
    restored = Drift.restore(head.state())
    got += [tuple(restored.update(x, ts)[:3]) for ts, x in stream[cut:]]
    assert got == expected


def test_category_drift_learns_its_named_window() -> None:
    rng = random.Random(8)
    names = ["DE", "US", "FR"]
    before = [(T0 - 100 + i, x) for i, x in enumerate(rng.choices(names, [1, 1, 8], k=100))]  # ignored
    inside = [(T0 + i * 600, x) for i, x in enumerate(rng.choices(names, [6, 3, 1], k=1008))]
    after = [(WEEK[1] + i * 60, x) for i, x in enumerate(rng.choices(names, [6, 3, 1], k=1000))]
    moved = [(WEEK[1] + (1000 + i) * 60, x) for i, x in enumerate(rng.choices(names, [1, 3, 6], k=300))]
    stream = before + inside + after + moved
    det = CategoryDrift(reference_window=WEEK, window_size=100)
    verdicts = [det.update(x, ts) for ts, x in stream]
    assert not any(v.active for v in verdicts[: len(before) + len(inside) + len(after)])
    first = next(i for i, v in enumerate(verdicts) if v.active)
    evidence = verdicts[first].evidence
    assert evidence["reference_n"] == 1008 and evidence["reference_source"].startswith("window 2026-11-02")
    for cut in (50, 600, len(before) + len(inside) + 10):  # before, inside and just after the window
        head = CategoryDrift(reference_window=WEEK, window_size=100)
        got = [tuple(head.update(x, ts)[:3]) for ts, x in stream[:cut]]
        restored = CategoryDrift.restore(head.state())
        got += [tuple(restored.update(x, ts)[:3]) for ts, x in stream[cut:]]
        assert got == [tuple(v[:3]) for v in verdicts], cut


@pytest.mark.parametrize("window", [[T0], "2026-11-02", [T0, "yesterday"], [T0, T0], [True, T0 + 1]])
def test_bad_windows_are_rejected(window: object) -> None:
    from agent.errors import DetectorError

    with pytest.raises(DetectorError, match="reference_window"):
        Drift(reference_window=window)
