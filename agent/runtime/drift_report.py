"""One Evidently drift report (HTML) comparing a detector's reference with its current window.

Called off the event loop when a drift alert fires (see ``reports.DriftReports``); the
samples come from the detector's ``report_samples()``. Evidently is imported here and
only here, when the first report is written: it takes seconds to import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_drift_report"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def write_drift_report(reference: Sequence, current: Sequence, *, feature: str, out_dir: Path, name: str) -> Path:
    """Write ``out_dir/<name>.html``: Evidently's DataDriftPreset on one column, with tests.

    Numbers get Evidently's default numeric drift test (K-S for small samples), strings
    its categorical one (chi-square or Z-test); the report's column is named ``feature``.
    Raises ``ValueError`` when a sample is empty.
    """
    if not reference or not current:
        raise ValueError(f"drift report for {feature!r} needs both samples (reference {len(reference)}, current {len(current)})")
    pd, evidently = _evidently()
    categorical = any(isinstance(v, str) for v in reference) or any(isinstance(v, str) for v in current)
    if categorical:
        definition = evidently.DataDefinition(categorical_columns=[feature])
        ref, cur = [str(v) for v in reference], [str(v) for v in current]
    else:
        definition = evidently.DataDefinition(numerical_columns=[feature])
        ref, cur = [float(v) for v in reference], [float(v) for v in current]
    datasets = [evidently.Dataset.from_pandas(pd.DataFrame({feature: rows}), data_definition=definition) for rows in (cur, ref)]
    from evidently.presets import DataDriftPreset

    report = evidently.Report([DataDriftPreset(columns=[feature])], include_tests=True)
    snapshot = report.run(datasets[0], datasets[1])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{_UNSAFE.sub('_', name).strip('._') or 'drift'}.html"
    snapshot.save_html(str(path))
    return path


def _evidently():
    # imported on first report only: evidently and pandas cost ~1 s and most agents never drift
    import evidently
    import pandas as pd

    return pd, evidently
