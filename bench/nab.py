"""The project's own implementation of NAB scoring (the Numenta Anomaly Benchmark).

Written from NAB's published rules (``../shared/data/nab/README.md``) and checked against
the behaviour of NAB's ``nab/sweeper.py``; no NAB code is used. A detector is run over a
series and gives a yes/no detection per row (score >= one fixed threshold); this module
turns those detections into NAB's score:

* each labelled anomaly has a window of rows (``labels/combined_windows.json``); the
  first 15 % of a file's rows, at most 750, are a probation period and are not scored;
* only the earliest detection inside a window counts, worth
  ``tp * sigmoid_scaled(y) / sigmoid_scaled(-1)`` with ``y = -(right - i + 1) / width``
  (1 at the window's left edge, ~0 at its right edge); a window with no detection costs
  ``-fn``;
* a detection outside every window costs ``fp * sigmoid_scaled(d)`` (a negative number),
  with ``d`` the distance past the previous window's right edge in window widths
  (``|right - i| / (width - 1)``), or the full ``-fp`` when no window precedes it;
* corpus score ``S`` is the sum over files; normalised score
  ``100 * (S - S_null) / (S_perfect - S_null)``, with ``S_perfect = windows * tp`` and
  ``S_null`` the score of a detector that never fires (``-fn`` per window).

    from bench.nab import load_corpus, load_profiles, score_corpus
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "FileScore",
    "Profile",
    "Series",
    "load_corpus",
    "load_profiles",
    "normalised",
    "probation_rows",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
]

PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = 750  # NAB: probationPercent * 5000


@dataclass(frozen=True, slots=True)
class Profile:
    """One NAB cost profile (``config/profiles.json``)."""

    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True, slots=True)
class Series:
    """One NAB data file: its rows and its anomaly windows as inclusive row ranges."""

    name: str
    ts: tuple[float, ...]  # epoch seconds (the file's naive timestamps read as UTC)
    values: tuple[float, ...]
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class FileScore:
    """NAB's score of one file under one profile, with the counts behind it."""

    score: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside every window (scored rows only)
    windows: int  # windows that have scored rows
    detections_at: tuple[int, ...] = field(default=())  # row of the counted detection per detected window


def scaled_sigmoid(position: float) -> float:
    """NAB's weight curve: ~+1 at -1 (early), 0 at 0, ~-1 at +1 and exactly -1 from +3 on."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a file that are not scored: 15 % of them, at most 750."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_PERCENT * 5000))


def score_file(detections: Sequence[bool], windows: Sequence[tuple[int, int]], profile: Profile) -> FileScore:
    """Score one file's per-row detections against its windows (inclusive row ranges)."""
    n = len(detections)
    probation = probation_rows(n)
    ordered = sorted(windows)
    for (s1, e1), (s2, _) in zip(ordered, ordered[1:], strict=False):
        if s2 <= e1:
            raise ValueError(f"windows overlap: ({s1}, {e1}) and starting at row {s2}")
    max_tp = scaled_sigmoid(-1.0)
    window_of = [-1] * n
    for k, (start, end) in enumerate(ordered):
        if not 0 <= start <= end < n:
            raise ValueError(f"window ({start}, {end}) is outside the file's {n} rows")
        for i in range(start, end + 1):
            window_of[i] = k
    counted = {window_of[i] for i in range(probation, n) if window_of[i] >= 0}
    best: dict[int, float] = {k: -profile.fn for k in counted}
    first_row: dict[int, int] = {}
    fp_total = 0.0
    fp_count = 0
    prev_right: int | None = None
    prev_width: int | None = None
    for i in range(n):
        k = window_of[i]
        if k >= 0:
            start, end = ordered[k]
            if i >= probation and detections[i] and k not in first_row:
                width = end - start + 1
                first_row[k] = i
                best[k] = scaled_sigmoid(-(end - i + 1) / width) * profile.tp / max_tp
            if i == end:
                prev_right, prev_width = end, end - start + 1
        elif i >= probation and detections[i]:
            if prev_right is None or prev_width is None or prev_width <= 1:
                position = 3.0
            else:
                position = abs(prev_right - i) / (prev_width - 1)
            fp_total += scaled_sigmoid(position) * profile.fp
            fp_count += 1
    score = sum(best.values()) + fp_total
    return FileScore(
        score=score,
        tp=len(first_row),
        fn=len(counted) - len(first_row),
        fp=fp_count,
        windows=len(counted),
        detections_at=tuple(first_row[k] for k in sorted(first_row)),
    )


def normalised(score: float, windows: int, profile: Profile) -> float:
    """100 * (S - S_null) / (S_perfect - S_null) over a corpus with ``windows`` windows."""
    null = -profile.fn * windows
    perfect = profile.tp * windows
    if perfect == null:
        raise ValueError("a corpus without windows cannot be normalised")
    return 100.0 * (score - null) / (perfect - null)


def score_corpus(
    detections: Mapping[str, Sequence[bool]], corpus: Iterable[Series], profiles: Mapping[str, Profile]
) -> dict[str, dict]:
    """Per-profile totals and normalised scores, plus per-file scores, for a whole corpus."""
    series = list(corpus)
    out: dict[str, dict] = {}
    for name, profile in profiles.items():
        files = {s.name: score_file(detections[s.name], s.windows, profile) for s in series}
        total = sum(f.score for f in files.values())
        windows = sum(f.windows for f in files.values())
        out[name] = {
            "score": total,
            "normalised": normalised(total, windows, profile),
            "windows": windows,
            "tp": sum(f.tp for f in files.values()),
            "fp": sum(f.fp for f in files.values()),
            "files": files,
        }
    return out


# --- reading NAB's files ----------------------------------------------------------------
_PROFILE_NAMES = {"standard": "standard", "reward_low_FP_rate": "reward_low_FP", "reward_low_FN_rate": "reward_low_FN"}


def load_profiles(root: Path) -> dict[str, Profile]:
    """The cost profiles in ``root/config/profiles.json``, keyed standard / reward_low_FP / reward_low_FN."""
    raw = json.loads((root / "config" / "profiles.json").read_text())
    profiles = {}
    for key, body in raw.items():
        cost = body["CostMatrix"]
        name = _PROFILE_NAMES.get(key, key)
        profiles[name] = Profile(name, float(cost["tpWeight"]), float(cost["fpWeight"]), float(cost["fnWeight"]))
    return profiles


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc).timestamp()


def load_corpus(root: Path) -> list[Series]:
    """Every ``root/data/<category>/<file>.csv`` that has an entry in ``combined_windows.json``."""
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    corpus = []
    for name in sorted(labels):
        path = root / "data" / name
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        ts = tuple(_epoch(r["timestamp"]) for r in rows)
        values = tuple(float(r["value"]) for r in rows)
        index: dict[float, int] = {}
        for i, t in enumerate(ts):
            index.setdefault(t, i)  # NAB matches a window's edges to the first row with that time
        windows = []
        for start, end in labels[name]:
            try:
                windows.append((index[_epoch(start)], index[_epoch(end)]))
            except KeyError:
                raise ValueError(f"{name}: window [{start}, {end}] does not start and end on a row") from None
        corpus.append(Series(name, ts, values, tuple(windows)))
    return corpus
