"""Drift reports: when a drift alert fires, an Evidently report is written and linked.

The detector keeps bounded reference and current samples (``report_samples``); the
report is built off the event loop and its URL goes into the alert's annotations
(``drift_report``) before the transition is published, and stays on every re-send.
A report that cannot be written is logged and counted; the page still goes out.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.logs import get_logger
from agent.model import Alert, AlertState

from .http import Request, Response

__all__ = ["DriftReports"]

_log = get_logger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.html$")


class DriftReports:
    """Writes reports for firing alerts whose detector offers ``report_samples``."""

    route = "/reports/"

    def __init__(
        self,
        out_dir: str | Path,
        base_url: Callable[[], str],
        lookup: Callable[[tuple[str, tuple[str, ...]]], Any],
        annotate: Callable[[str, tuple[str, ...], dict[str, str]], None],
    ) -> None:
        self.out_dir = Path(out_dir)
        self._base_url = base_url
        self._lookup = lookup
        self._annotate = annotate
        self.failures = 0

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

        reference, current = samples()
        name = f"{alert.name}-{alert.fingerprint}-{int(alert.fired_at or alert.active_at)}"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = await asyncio.to_thread(
                write_drift_report, reference, current, feature=state.rule.field, out_dir=self.out_dir, name=name
            )
        except Exception as exc:  # noqa: BLE001 - a report must never hold a page back
            self.failures += 1
            _log.error("drift report failed; the alert goes out without it", alert=alert.name, error=str(exc))
            return None
        return f"{self._base_url().rstrip('/')}{self.route}{Path(path).name}"

    async def serve(self, request: Request) -> Response:
        """GET /reports/NAME.html from the report folder (names only, no paths)."""
        name = request.path.removeprefix(self.route)
        if request.method not in ("GET", "HEAD") or not _NAME.match(name):
            return Response(404, "not found\n")
        path = self.out_dir / name
        if not path.is_file():
            return Response(404, "not found\n")
        return Response(200, path.read_bytes(), content_type="text/html; charset=utf-8")
