"""The pipeline's bounds at work, told to people: refusal counters to metrics, and a log line.

The engine and the lifecycle are pure, so they only count (series refused a place, new
alerts refused at the bound, alerts found without state); this object moves those counts
into the self-metrics after each batch and logs a warning at most once per ``log_every_s``
per kind, so a flood of invented names costs one log line a minute, not one per record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.logs import get_logger

from .selfmetrics import SelfMetrics

__all__ = ["SeriesReport"]

_log = get_logger(__name__)


class SeriesReport:
    """Drains the counters of one pipeline (the current one: reloads keep it) after each batch."""

    def __init__(self, metrics: SelfMetrics, log_every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.log_every_s = log_every_s
        self._clock = clock
        self._last_log: dict[str, float] = {}

    def update(self, pipeline: Any) -> None:
        for source, (count, sample) in pipeline.engine.drain_refused().items():
            self.metrics.series_refused.labels(source).inc(count)
            if self._due("series:" + source):
                _log.warning(
                    "series refused: the source's share of max_series holds only proven series and alerts",
                    source=source, refused=count, rule=sample[0], series=list(sample[1]),
                )
        lifecycle = pipeline.lifecycle
        if lifecycle.refused:
            self.metrics.alerts_refused.inc(lifecycle.refused)
            if self._due("alerts"):
                _log.warning("new alerts refused at max_active_alerts; firing ones go on", refused=lifecycle.refused, held=len(lifecycle.active))
            lifecycle.refused = 0
        if pipeline.orphans_resolved:
            self.metrics.alerts_orphaned.inc(pipeline.orphans_resolved)
            _log.error("alerts without series state: resolving them after keep_firing_for", evaluations=pipeline.orphans_resolved)
            pipeline.orphans_resolved = 0

    def _due(self, kind: str) -> bool:
        now = self._clock()
        if now - self._last_log.get(kind, float("-inf")) < self.log_every_s:
            return False
        self._last_log[kind] = now
        return True
