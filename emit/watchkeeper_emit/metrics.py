"""Optional Prometheus export of an emitter's counters, read at scrape time.

The counters live as plain attributes on the emitter (no hot-path cost, no dependency);
when ``prometheus_client`` is importable a collector renders them as
``watchkeeper_emit_sent_total``, ``watchkeeper_emit_dropped_total{reason}``,
``watchkeeper_emit_errors_total``, ``watchkeeper_emit_buffered`` and
``watchkeeper_emit_buffer_capacity``, labelled by ``client_id``. One collector per
registry serves every live emitter, so two emitters never collide on names.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

__all__ = ["METRIC_NAMES", "register"]

METRIC_NAMES = (
    "watchkeeper_emit_sent_total",
    "watchkeeper_emit_dropped_total",
    "watchkeeper_emit_errors_total",
    "watchkeeper_emit_buffered",
    "watchkeeper_emit_buffer_capacity",
)
_COLLECTORS: "weakref.WeakKeyDictionary[Any, _Collector]" = weakref.WeakKeyDictionary()


class _Collector:
    def __init__(self) -> None:
        self.emitters: weakref.WeakSet[Any] = weakref.WeakSet()

    def describe(self) -> list[Any]:
        return []  # names are fixed; skip describe-time collection

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sent = CounterMetricFamily("watchkeeper_emit_sent", "Events acknowledged by Kafka.", labels=["client_id"])
        dropped = CounterMetricFamily(
            "watchkeeper_emit_dropped",
            "Events dropped before sending: buffer_full, invalid, too_large, closed, shutdown.",
            labels=["client_id", "reason"],
        )
        errors = CounterMetricFamily("watchkeeper_emit_errors", "Events Kafka did not acknowledge.", labels=["client_id"])
        buffered = GaugeMetricFamily("watchkeeper_emit_buffered", "Events waiting in the buffer.", labels=["client_id"])
        capacity = GaugeMetricFamily("watchkeeper_emit_buffer_capacity", "Buffer size in events.", labels=["client_id"])
        for emitter in list(self.emitters):
            cid = emitter.client_id
            sent.add_metric([cid], emitter.sent)
            errors.add_metric([cid], emitter.errors)
            for reason, count in emitter.dropped_by_reason.items():
                dropped.add_metric([cid, reason], count)
            buffered.add_metric([cid], emitter.buffered)
            capacity.add_metric([cid], emitter.max_buffer)
        yield from (sent, dropped, errors, buffered, capacity)


def register(emitter: Any, registry: Any = None) -> bool:
    """Export ``emitter`` in ``registry`` (default: the global one); False without prometheus_client."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return False
    registry = REGISTRY if registry is None else registry
    collector = _COLLECTORS.get(registry)
    if collector is None:
        collector = _COLLECTORS[registry] = _Collector()
        registry.register(collector)
    collector.emitters.add(emitter)
    return True
