"""One Evidently drift report (HTML) comparing a detector's reference with its current window.

Called off the event loop when a drift alert fires (see ``reports.DriftReports``); the
samples come from the detector's ``report_samples()``. Evidently is imported here and
only here, when the first report is written: it takes seconds to import.

The samples are whatever producers sent (category values are free text), and Evidently
embeds them as JSON inside a ``<script>`` element without escaping ``<``: a value
``</script><img onerror=...>`` would end the script and run in the report. So the
embedded data is parsed back and written again with ``<``, ``>``, ``&``, U+2028 and
U+2029 as ``\\uXXXX`` escapes (what the browser's JSON reader decodes to the same
text), and the result is checked before it reaches the disk: exactly the template's
script elements, no event-handler attributes, no external sources. A report that does
not have the shape expected is refused (a new Evidently version must be looked at),
never written unescaped. The agent serves the file with a sandboxing CSP besides.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["check_report", "escape_embedded_data", "write_drift_report"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_DATA_START = re.compile(r"<script>\s*var (metric_[0-9a-f]+) = ")
_JS_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TEMPLATE_SCRIPTS = 4  # data, `var global`, the library, drawDashboard: Evidently 0.7's file template


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
    html = escape_embedded_data(snapshot.get_html_str(as_iframe=False))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{_UNSAFE.sub('_', name).strip('._')[:120] or 'drift'}.html"
    partial = path.with_name(path.name + ".part")  # not served (not *.html) until complete
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)
    return path


def escape_embedded_data(html: str) -> str:
    """Evidently's page with its embedded JSON re-encoded safe for a ``<script>`` element.

    The data block is located by its template (``<script> var metric_<hex> = {...};
    var additional_graphs_metric_<hex> = {...}; </script>``) and each value is read
    with a JSON decoder, which finds its true end whatever the strings inside hold.
    Raises ``ValueError`` when the page does not have that shape or, once rewritten,
    holds anything executable beyond the template's own scripts.
    """
    start = _DATA_START.search(html)
    if start is None:
        raise ValueError("the Evidently page has no embedded data block where expected")
    decoder = json.JSONDecoder()
    try:
        info, end = decoder.raw_decode(html, start.end())
        more = re.compile(rf";\s*var additional_graphs_{start.group(1)} = ").match(html, end)
        if more is None:
            raise ValueError("no additional_graphs after the dashboard")
        graphs, end = decoder.raw_decode(html, more.end())
    except json.JSONDecodeError as exc:
        raise ValueError(f"the Evidently page's embedded data is not JSON: {exc}") from None
    close = re.compile(r";\s*</script>").match(html, end)
    if close is None:
        raise ValueError("the Evidently page's data block does not end where expected")
    block = (
        f"<script>\n    var {start.group(1)} = {_script_json(info)};\n"
        f"    var additional_graphs_{start.group(1)} = {_script_json(graphs)};\n</script>"
    )
    out = html[: start.start()] + block + html[close.end() :]
    check_report(out)
    return out


def _script_json(value: object) -> str:
    text = json.dumps(value)
    for char, escape in _JS_UNSAFE.items():
        text = text.replace(char, escape)
    return text


class _Elements(HTMLParser):
    """Counts script elements and collects what would run or load outside them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts = 0
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name.startswith("on") or name in ("src", "srcdoc", "formaction", "action") or (
                name == "href" and (value or "").strip().lower().startswith("javascript:")
            ):
                self.problems.append(f"<{tag} {name}=...>")


def check_report(html: str) -> None:
    """Raise ``ValueError`` unless ``html`` holds only the template's scripts and no handlers.

    Run when a report is written and again when it is served (a file written by an
    older agent, before the escaping, is refused rather than sent).
    """
    elements = _Elements()
    elements.feed(html)
    elements.close()
    if elements.problems or elements.scripts != _TEMPLATE_SCRIPTS:
        found = ", ".join(elements.problems[:3]) or f"{elements.scripts} script elements, expected {_TEMPLATE_SCRIPTS}"
        raise ValueError(f"the drift report is not the expected Evidently page ({found}); not written")


def _evidently():
    # imported on first report only: evidently and pandas cost ~1 s and most agents never drift
    import evidently
    import pandas as pd

    return pd, evidently
