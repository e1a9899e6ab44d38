"""bench/quality_drift.py's real-series set-up: TCPD's sampling, and the scoring of alarms."""

from __future__ import annotations

import sys
from pathlib import Path

from river.drift import datasets as tcpd

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.quality_drift import REAL, beats, change_points, real_series, score_real, tcpd_rows  # noqa: E402

def test_series_are_the_ones_tcpd_annotated():
    """river ships Apple, Brent and Bitcoin at another sampling than TCPD's; the bench converts them.

    Brent's first values and the last date come from TCPD's brent_spot.json (2000-01-04: 23.95,
    2000-01-18: 26.31, 2000-02-01: 27.35, ..., 2019-08-20); every annotation falls inside its series.
    """
    rows = tcpd_rows("BrentSpotPrice", list(tcpd.BrentSpotPrice()))
    assert [y for _, y in rows[:3]] == [23.95, 26.31, 27.35]
    assert rows[0][0]["day"].isoformat()[:10] == "2000-01-04" and rows[-1][0]["day"].isoformat()[:10] == "2019-08-20"
    series = real_series()
    assert set(series) == set(REAL)
    lengths = {name: len(xs) for name, (xs, _) in series.items()}
    assert lengths == {"AirlinePassengers": 468, "Apple": 622, "Bitcoin": 774, "BrentSpotPrice": 500,
                       "Occupancy": 509, "RunLog": 376, "UKCoalEmploy": 105}
    for name, (xs, cps) in series.items():
        ds = getattr(tcpd, name)()
        marks = {p for m in ds.annotations.values() for p in m if p > 0}
        assert max(marks) < len(xs), name  # no annotation lies past the converted series
        assert cps == change_points(ds, len(xs))
    assert sum(len(cps) for _, cps in series.values()) == 69


def test_score_counts_the_first_alarm_per_change_point_and_the_rest_as_false():
    # change points 10 and 30 in 50 rows: alarm 12 finds the first (delay 2), 15 is false,
    # nothing in [30, 50) so the second is missed (censored: 20 rows to the end), 5 is false
    scored = score_real([5, 12, 15], [10, 30], 50)
    assert scored["detected"] == 1 and scored["false_alarms"] == 2
    assert scored["delay_sum"] == 2 and scored["censored_sum"] == 2 + 20


def test_beats_needs_more_found_at_no_more_false_alarms_or_as_many_sooner():
    adwin = {"detected": 29, "false_alarms": 8, "censored_sum": 1800}
    assert beats({"detected": 30, "false_alarms": 8, "censored_sum": 1900}, adwin)
    assert beats({"detected": 29, "false_alarms": 6, "censored_sum": 1700}, adwin)
    assert not beats({"detected": 29, "false_alarms": 6, "censored_sum": 1800}, adwin)
    assert not beats({"detected": 40, "false_alarms": 9, "censored_sum": 1000}, adwin)
