"""Drift reports: when a drift alert fires, an Evidently report is written and linked.

The detector keeps bounded reference and current samples (``report_samples``); the
report is built off the event loop and its URL goes into the alert's annotations
(``drift_report``) before the transition is published, and stays on every re-send.
A report that cannot be written is logged and counted; the page still goes out.

The file name is the agent's own (alert name made safe, fingerprint, wall-clock
second), never a label or an event time a producer chose. Reports are bounded: after
each write the oldest are deleted until at most ``max_count`` files and ``max_bytes``
remain (the newest is always kept), counted in ``watchkeeper_reports_deleted_total``.
They are served (to token holders, like every non-probe route) with a CSP that
sandboxes the page into an opaque origin that can load and send nothing, and with
``nosniff``; the values inside are escaped when the file is written (drift_report.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.logs import get_logger
from agent.model import Alert, AlertState

from .http import Request, Response
from .selfmetrics import SelfMetrics

__all__ = ["REPORT_HEADERS", "DriftReports", "prune_reports"]

_log = get_logger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.html$")
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")

REPORT_HEADERS = {
    # Evidently draws the report with its inline scripts, so they may run, but in a
    # sandbox: an opaque origin (no cookies, no same-origin reads of the agent's API),
    # no forms, popups or top navigation; and nothing may be fetched or sent.
    "content-security-policy": (
        "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:; font-src data:; connect-src 'none'; "
        "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "private, no-store",
}


def prune_reports(out_dir: Path, *, max_count: int, max_bytes: int, keep: Path | None = None) -> tuple[int, int, int]:
    """Delete the oldest reports beyond the limits; ``(deleted, kept, kept_bytes)``.

    Only files the agent names (``*.html``) count; leftovers of an interrupted write
    (``*.part``) are deleted too. ``keep`` (the report just written) is never deleted,
    even if it alone is larger than ``max_bytes``.
    """
    reports: list[tuple[float, str, Path, int]] = []
    deleted = 0
    try:
        entries = list(os.scandir(out_dir))
    except FileNotFoundError:
        return 0, 0, 0
    for entry in entries:
        if not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if entry.name.endswith(".html.part") and path != keep:
            if _unlink(path):
                deleted += 1
        elif _NAME.fullmatch(entry.name):
            st = entry.stat(follow_symlinks=False)
            reports.append((st.st_mtime, entry.name, path, st.st_size))
    reports.sort()
    count, total = len(reports), sum(r[3] for r in reports)
    for _, _, path, size in reports:
        if count <= max_count and total <= max_bytes:
            break
        if path == keep:
            continue
        if _unlink(path):
            deleted += 1
        count, total = count - 1, total - size
    return deleted, count, total


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


class DriftReports:
    """Writes reports for firing alerts whose detector offers ``report_samples``."""

    route = "/reports/"

    def __init__(
        self,
        out_dir: str | Path,
        base_url: Callable[[], str],
        lookup: Callable[[tuple[str, tuple[str, ...]]], Any],
        annotate: Callable[[str, tuple[str, ...], dict[str, str]], None],
        *,
        max_count: int = 100,
        max_bytes: int = 512 * 1024 * 1024,
        metrics: SelfMetrics | None = None,
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError(f"report limits must be >= 1, got max_count={max_count}, max_bytes={max_bytes}")
        self.out_dir = Path(out_dir)
        self._base_url = base_url
        self._lookup = lookup
        self._annotate = annotate
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._metrics = metrics
        self.failures = 0
        self.deleted = 0
        self._prune(None)  # reports left by an earlier run count against the limits too

    async def attach(self, alerts: list[Alert]) -> list[Alert]:
        out = []
        for alert in alerts:
            if alert.state is AlertState.FIRING and "drift_report" not in alert.annotations:
                url = await self._write(alert)
                if url is not None:
                    extra = {"drift_report": url}
                    self._annotate(alert.rule_id, alert.series, extra)
                    alert = replace(alert, annotations={**alert.annotations, **extra})
            out.append(alert)
        return out

    async def _write(self, alert: Alert) -> str | None:
        state = self._lookup((alert.rule_id, alert.series))
        samples = getattr(getattr(state, "detector", None), "report_samples", None)
        if samples is None:
            return None
        from .drift_report import write_drift_report

        # the agent's own name: the rule's alert name made safe, the fingerprint (hex of
        # a hash) made safe, and the wall clock; no label, no producer's event time
        name = f"{_SAFE.sub('_', alert.name)[:64]}-{_SAFE.sub('_', alert.fingerprint)[:32]}-{int(time.time())}"
        try:
            reference, current = samples()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = await asyncio.to_thread(
                write_drift_report, reference, current, feature=state.rule.field, out_dir=self.out_dir, name=name
            )
        except Exception as exc:  # noqa: BLE001 - a report must never hold a page back
            self.failures += 1
            _log.error("drift report failed; the alert goes out without it", alert=alert.name, error=str(exc))
            return None
        await asyncio.to_thread(self._prune, Path(path))
        return f"{self._base_url().rstrip('/')}{self.route}{Path(path).name}"

    def _prune(self, keep: Path | None) -> None:
        """Apply the limits; a folder that cannot be read or cleaned is logged, never raised."""
        try:
            deleted, kept, kept_bytes = prune_reports(self.out_dir, max_count=self.max_count, max_bytes=self.max_bytes, keep=keep)
        except OSError as exc:
            _log.error("drift reports could not be pruned", folder=str(self.out_dir), error=str(exc))
            return
        self.deleted += deleted
        if deleted:
            _log.info("old drift reports deleted", deleted=deleted, kept=kept, kept_bytes=kept_bytes)
        if self._metrics is not None:
            self._metrics.reports_deleted.inc(deleted)
            self._metrics.reports_kept.set(kept)
            self._metrics.reports_bytes.set(kept_bytes)

    async def serve(self, request: Request) -> Response:
        """GET /reports/NAME.html from the report folder (names only, no paths)."""
        name = request.path.removeprefix(self.route)
        if request.method not in ("GET", "HEAD") or not _NAME.fullmatch(name):
            return Response(404, "not found\n")
        try:
            body = await asyncio.to_thread(_read_checked, self.out_dir / name)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return Response(404, "not found\n")
        except ValueError as exc:
            _log.error("drift report not served: it is not a page this agent wrote", report=name, error=str(exc))
            return Response(403, "this report is not a page this agent wrote safely; it is not served\n")
        return Response(200, body, content_type="text/html; charset=utf-8", headers=REPORT_HEADERS)


def _read_checked(path: Path) -> bytes:
    """The report's bytes, once checked again (``ValueError`` if unsafe, e.g. an older agent's)."""
    from .drift_report import check_report

    body = path.read_bytes()
    try:
        check_report(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    return body
