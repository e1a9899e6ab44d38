"""The agent's own Prometheus metrics, updated at stage boundaries only.

One object owns one ``CollectorRegistry`` so tests (and two agents in one process)
never share counters through the global default registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["SelfMetrics"]


class SelfMetrics:
    """Every metric Watchkeeper exports, named the Prometheus way."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "watchkeeper_events_total",
            "Events consumed, by source and outcome (processed, dead_letter, late).",
            ["source", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "watchkeeper_dead_letters_total",
            "Events sent to the dead-letter topic, by topic and reason kind.",
            ["topic", "reason"],
            registry=r,
        )
        self.findings = Counter(
            "watchkeeper_findings_total",
            "Detector verdicts that were active, by alert name.",
            ["alertname"],
            registry=r,
        )
        self.detector_update = Histogram(
            "watchkeeper_detector_update_seconds",
            "Time of one detector update (sampled), by detector kind.",
            ["kind"],
            buckets=(1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2),
            registry=r,
        )
        self.series = Gauge(
            "watchkeeper_series", "Series (rule x key) held in memory.", registry=r
        )
        self.series_evicted = Counter(
            "watchkeeper_series_evicted_total",
            "Idle series dropped to keep memory bounded.",
            registry=r,
        )
        self.alerts = Gauge(
            "watchkeeper_alerts", "Alerts by state.", ["state"], registry=r
        )
        self.alert_transitions = Counter(
            "watchkeeper_alert_transitions_total",
            "Alert state changes published, by new state.",
            ["state"],
            registry=r,
        )
        self.alertmanager_sends = Counter(
            "watchkeeper_alertmanager_sends_total",
            "Posts to an Alertmanager, by URL and outcome (ok, error).",
            ["url", "outcome"],
            registry=r,
        )
        self.alertmanager_send_failures = Counter(
            "watchkeeper_alertmanager_send_failures_total",
            "Posts to an Alertmanager that failed (connection error or non-2xx).",
            ["url"],
            registry=r,
        )
        self.alertmanager_pending = Gauge(
            "watchkeeper_alertmanager_pending_notifications",
            "Notifications waiting to be delivered to any Alertmanager.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "watchkeeper_consumer_lag",
            "Messages between the consumer position and the partition high-water mark.",
            ["topic", "partition"],
            registry=r,
        )
        self.batch_duration = Histogram(
            "watchkeeper_batch_duration_seconds",
            "Time to process one consumed batch, commit excluded.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.rules_loaded = Gauge(
            "watchkeeper_rules", "Rules currently loaded.", registry=r
        )
        self.rules_reloads = Counter(
            "watchkeeper_rules_reloads_total",
            "Rule reloads, by outcome (success, failure).",
            ["outcome"],
            registry=r,
        )
        self.rules_last_reload_ok = Gauge(
            "watchkeeper_rules_last_reload_successful",
            "1 if the last rules load succeeded, else 0 (the old rules keep running).",
            registry=r,
        )
