"""The project's NAB scorer (bench/nab.py) on tiny cases worked out by hand."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.nab import (  # noqa: E402
    Profile,
    load_corpus,
    load_profiles,
    normalised,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    score_file,
)

STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)
LOW_FP = Profile("reward_low_FP", tp=1.0, fp=0.22, fn=1.0)
LOW_FN = Profile("reward_low_FN", tp=1.0, fp=0.11, fn=2.0)
MAX_TP = math.tanh(2.5)  # scaled_sigmoid(-1): the weight of the window's left edge


def detections(n: int, *rows: int) -> list[bool]:
    marked = set(rows)
    return [i in marked for i in range(n)]


def test_scaled_sigmoid_is_nabs_curve():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0 and scaled_sigmoid(7.5) == -1.0


def test_probation_is_15_percent_capped_at_750_rows():
    assert probation_rows(100) == 15
    assert probation_rows(1243) == 186
    assert probation_rows(4032) == 604
    assert probation_rows(22695) == 750


def test_perfect_detector_scores_one_per_window_and_100_normalised():
    got = score_file(detections(100, 40), [(40, 59)], STANDARD)
    assert got.score == pytest.approx(1.0)
    assert (got.tp, got.fn, got.fp, got.windows) == (1, 0, 0, 1)
    assert normalised(got.score, 1, STANDARD) == pytest.approx(100.0)


def test_null_detector_scores_minus_fn_and_0_normalised():
    for profile in (STANDARD, LOW_FP, LOW_FN):
        got = score_file(detections(100), [(40, 59)], profile)
        assert got.score == -profile.fn
        assert normalised(got.score, 1, profile) == 0.0


def test_detection_at_the_right_edge_earns_about_nothing():
    got = score_file(detections(1000, 599), [(200, 599)], STANDARD)  # a 400-row window
    assert got.score == pytest.approx(math.tanh(2.5 / 400) / MAX_TP)  # 0.0063
    assert 0.0 < got.score < 0.01


def test_only_the_earliest_detection_in_a_window_counts():
    got = score_file(detections(100, 41, 45, 50), [(40, 59)], STANDARD)
    assert got.score == pytest.approx(math.tanh(2.5 * 19 / 20) / MAX_TP)  # position -(59-41+1)/20
    assert (got.tp, got.fp) == (1, 0)


def test_one_false_positive_far_from_windows_costs_fp():
    for profile in (STANDARD, LOW_FP):
        got = score_file(detections(100, 20, 40), [(40, 59)], profile)  # row 20: no window before it
        assert got.score == pytest.approx(1.0 - profile.fp)
        assert got.fp == 1


def test_false_positive_cost_grows_with_distance_past_the_previous_window():
    just_after = score_file(detections(200, 60), [(40, 59)], STANDARD)
    assert just_after.score == pytest.approx(-1.0 + 0.11 * scaled_sigmoid(1 / 19))  # 1 row past, width 20
    assert just_after.score == pytest.approx(-1.0 - 0.0143908, abs=1e-6)  # 0.11 * tanh(2.5 / 19)
    far = score_file(detections(200, 59 + 3 * 19), [(40, 59)], STANDARD)  # three widths past
    assert far.score == pytest.approx(-1.11)


def test_probation_rows_are_not_scored():
    got = score_file(detections(100, 3, 10, 14), [(40, 59)], STANDARD)  # probation: rows 0-14
    assert got.score == -1.0 and got.fp == 0


def test_missed_windows_cost_fn_each_under_each_profile():
    windows = [(20, 29), (60, 69)]
    got = score_file(detections(100, 20), windows, LOW_FN)
    assert got.score == pytest.approx(1.0 - 2.0)
    assert (got.tp, got.fn) == (1, 1)


def test_corpus_score_is_normalised_over_all_windows(tmp_path):
    root = _tiny_nab(tmp_path)
    corpus = load_corpus(root)
    profiles = load_profiles(root)
    assert set(profiles) == {"standard", "reward_low_FP", "reward_low_FN"}
    a, b = corpus
    assert a.windows == ((40, 59),) and b.windows == ((30, 39), (70, 79))
    perfect = {a.name: detections(100, 40), b.name: detections(100, 30, 70)}
    assert score_corpus(perfect, corpus, profiles)["standard"]["normalised"] == pytest.approx(100.0)
    null = {a.name: detections(100), b.name: detections(100)}
    assert score_corpus(null, corpus, profiles)["reward_low_FN"]["normalised"] == pytest.approx(0.0)
    half = {a.name: detections(100, 40), b.name: detections(100)}
    result = score_corpus(half, corpus, profiles)["standard"]
    assert result["score"] == pytest.approx(1.0 - 2.0)
    assert result["normalised"] == pytest.approx(100.0 * (-1.0 + 3.0) / 6.0)


def test_window_edges_match_the_first_row_with_that_timestamp(tmp_path):
    root = _tiny_nab(tmp_path, duplicate_at=40)
    a = load_corpus(root)[0]
    assert a.windows == ((40, 60),)  # row 41 repeats row 40's timestamp; the end moves one row


def _tiny_nab(root: Path, duplicate_at: int | None = None) -> Path:
    """Two 100-row files at 5-minute steps, with NAB's folder layout and profiles."""
    (root / "config").mkdir()
    (root / "labels").mkdir()
    (root / "data" / "demo").mkdir(parents=True)
    base = [f"2014-04-01 {i * 5 // 60:02d}:{i * 5 % 60:02d}:00" for i in range(100)]
    stamps = base if duplicate_at is None else base[: duplicate_at + 1] + base[duplicate_at:99]
    for name in ("a.csv", "b.csv"):
        rows = "\n".join(f"{t},{i}" for i, t in enumerate(stamps))
        (root / "data" / "demo" / name).write_text("timestamp,value\n" + rows + "\n")
    edge = lambda i: base[i] + ".000000"  # noqa: E731
    windows = {"demo/a.csv": [[edge(40), edge(59)]], "demo/b.csv": [[edge(30), edge(39)], [edge(70), edge(79)]]}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    cost = lambda fp, fn: {"CostMatrix": {"tpWeight": 1.0, "fnWeight": fn, "fpWeight": fp, "tnWeight": 1.0}}  # noqa: E731
    profiles = {"standard": cost(0.11, 1.0), "reward_low_FP_rate": cost(0.22, 1.0), "reward_low_FN_rate": cost(0.11, 2.0)}
    (root / "config" / "profiles.json").write_text(json.dumps(profiles))
    return root
