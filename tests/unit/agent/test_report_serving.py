"""Drift reports as a browser gets them: sandboxed, escaped, named by the agent, bounded.

A producer chooses category values; one of them ends up in Evidently's embedded JSON.
The report is fetched through the agent's real HTTP server and parsed (no browser):
no element the value could have created, no event handler, the CSP and nosniff set.
"""

from __future__ import annotations

import json
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.model import Alert, AlertState
from agent.runtime.drift_report import escape_embedded_data, write_drift_report
from agent.runtime.reports import DriftReports, prune_reports
from agent.runtime.selfmetrics import SelfMetrics
from detectors.category_drift import CategoryDrift
from tests.unit.agent.test_http_auth import TOKEN, agent_config, serving

pytestmark = pytest.mark.filterwarnings("ignore")  # evidently's own deprecation warnings

HOSTILE = [
    "</script><img src=x onerror=alert(1)>",
    "</SCRIPT ><svg onload=alert(2)>",
    "<!--<script>",
    "\u2028</script\u2029><iframe srcdoc='<script>alert(3)</script>'>",
    "&lt;/script&gt;<a href=javascript:alert(4)>x</a>",
]


class Elements(HTMLParser):
    """Every element with its attributes, and the text of every script element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(html: str) -> Elements:
    elements = Elements()
    elements.feed(html)
    elements.close()
    return elements


def hostile_samples() -> tuple[list[str], list[str]]:
    """A CategoryDrift fed hostile category values by a producer, as the agent holds it."""
    detector = CategoryDrift(reference_size=300, window_size=100)
    for i in range(500):
        value = HOSTILE[i % len(HOSTILE)] if i < 400 else "DE"
        detector.update(value, float(i))
    return detector.report_samples()


def assert_inert(html: str) -> None:
    elements = parse(html)
    tags = {tag for tag, _ in elements.tags}
    assert tags <= {"html", "head", "meta", "style", "script", "body", "div"}, tags
    handlers = [(tag, name) for tag, attrs in elements.tags for name in attrs if name.startswith("on") or name in ("src", "srcdoc", "href")]
    assert handlers == []
    assert len(elements.scripts) == 4  # the data, `var global`, Evidently's library, drawDashboard
    data = elements.scripts[0]
    for value in HOSTILE:
        assert value not in html
    # the values are all there, as JSON the page's script reads back exactly
    decoded = json.loads(re.search(r"var metric_[0-9a-f]+ = (.*);\s*var additional_graphs_", data, re.S).group(1))  # type: ignore[union-attr]
    text = json.dumps(decoded, ensure_ascii=False)
    assert all(json.dumps(value, ensure_ascii=False)[1:-1] in text for value in HOSTILE)


async def test_a_hostile_category_is_inert_in_the_served_report(tmp_path: Path) -> None:
    config = agent_config(tmp_path, actions_approve_token=TOKEN)
    reference, current = hostile_samples()
    path = write_drift_report(reference, current, feature="features.country</script>", out_dir=Path(config.report_dir), name="Hostile-1")
    async with serving(config) as http:
        assert (await http.get(f"/reports/{path.name}")).status_code == 401
        answer = await http.get(f"/reports/{path.name}", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    csp = [part.strip() for part in answer.headers["content-security-policy"].split(";")]
    assert csp[0].split()[0] == "sandbox" and "allow-same-origin" not in csp[0]
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "form-action 'none'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert_inert(answer.text)


async def test_an_unsafe_report_already_on_disk_is_not_served(tmp_path: Path) -> None:
    """A report an older agent wrote, before the escaping: refused, never sent."""
    config = agent_config(tmp_path, actions_approve_token=TOKEN)
    folder = Path(config.report_dir)
    folder.mkdir()
    (folder / "Old.html").write_text("<html><script>var x = 1;</script><img src=x onerror=alert(1)></html>")
    (folder / "Binary.html").write_bytes(b"\xff\xfe<script>")
    async with serving(config) as http:
        for name in ("Old.html", "Binary.html"):
            answer = await http.get(f"/reports/{name}", headers={"authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 403 and "onerror" not in answer.text


def test_an_unexpected_page_is_refused_not_written() -> None:
    with pytest.raises(ValueError, match="no embedded data block"):
        escape_embedded_data("<html><script>var x = 1;</script></html>")
    page = "<script>\n var metric_ab = {\"a\": 1};\n var additional_graphs_metric_ab = {};\n</script><img src=x onerror=alert(1)>"
    with pytest.raises(ValueError, match="not the expected Evidently page"):
        escape_embedded_data(page)


@pytest.mark.parametrize("name", ["../x.html", "..%2fx.html", "x.html%0a", "%2e%2e/%2e%2e/etc/passwd", ".html.part", "x.html.part"])
async def test_only_report_names_are_served(tmp_path: Path, name: str) -> None:
    config = agent_config(tmp_path, actions_approve_token=TOKEN)
    (tmp_path / "x.html").write_text("outside")
    Path(config.report_dir).mkdir()
    (Path(config.report_dir) / "x.html.part").write_text("unfinished")
    async with serving(config) as http:
        answer = await http.get(f"/reports/{name}", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404


def alert(name: str, fingerprint: str, labels: dict[str, str] | None = None) -> Alert:
    return Alert(
        fingerprint=fingerprint,
        rule_id="g/CountryDrift",
        state=AlertState.FIRING,
        labels={"alertname": name, **(labels or {})},
        annotations={},
        active_at=1e300,
        value=1.0,
        fired_at=float("inf"),
        series=("x",),
    )


def seed_reports(folder: Path, sizes: list[int]) -> list[Path]:
    """Older reports on disk, oldest first (mtimes a minute apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"Old-{i}.html"
        path.write_bytes(b"x" * size)
        os.utime(path, (now - 600 + 60 * i, now - 600 + 60 * i))
        paths.append(path)
    return paths


async def test_retention_deletes_the_oldest_reports_and_counts_them(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    old = seed_reports(out, [1000, 1000, 1000, 1000])
    metrics = SelfMetrics()
    state = SimpleNamespace(detector=SimpleNamespace(report_samples=hostile_samples), rule=SimpleNamespace(field="features.country"))
    annotated: list[Any] = []
    reports = DriftReports(
        out,
        base_url=lambda: "http://agent:9464",
        lookup=lambda skey: state,
        annotate=lambda *args: annotated.append(args),
        max_count=3,
        max_bytes=10_000_000,
        metrics=metrics,
    )
    assert reports.deleted == 1 and not old[0].exists()  # the start-up pass: 4 > 3
    # a hostile alert name and fingerprint (and an event time at infinity) steer nothing
    (firing,) = await reports.attach([alert("../../etc/CountryDrift", "../../x", {"service": "../../../tmp/evil"})])
    assert reports.failures == 0, "the report was not written"
    url = firing.annotations["drift_report"]
    assert re.fullmatch(r"http://agent:9464/reports/[A-Za-z0-9_-]*CountryDrift-_*x-\d+\.html", url), url
    kept = sorted(p.name for p in out.iterdir())
    assert kept == sorted(["Old-2.html", "Old-3.html", url.rsplit("/", 1)[1]])  # oldest two gone, newest kept
    assert metrics.reports_deleted._value.get() == 2
    assert metrics.reports_kept._value.get() == 3
    assert metrics.reports_bytes._value.get() == sum(p.stat().st_size for p in out.iterdir())
    assert_inert((out / url.rsplit("/", 1)[1]).read_text())


def test_the_byte_budget_deletes_oldest_first_and_keeps_the_newest(tmp_path: Path) -> None:
    paths = seed_reports(tmp_path, [400, 300, 200, 5000])
    (tmp_path / "crashed.html.part").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x" * 10_000)  # not a report: never counted, never deleted
    deleted, kept, kept_bytes = prune_reports(tmp_path, max_count=10, max_bytes=4000, keep=paths[-1])
    assert (deleted, kept, kept_bytes) == (4, 1, 5000)  # three old reports and the .part; the newest stays alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Old-3.html", "notes.txt"]
    seed_reports(tmp_path / "b", [400, 300, 200])
    assert prune_reports(tmp_path / "b", max_count=10, max_bytes=600) == (1, 2, 500)
    assert prune_reports(tmp_path / "absent", max_count=1, max_bytes=1) == (0, 0, 0)
