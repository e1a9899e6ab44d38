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
        self.actions = Counter(
            "watchkeeper_actions_total",
            "Remediation decisions, by action kind and outcome (executed, dry-run, noop, skipped, "
            "pending-approval, approved, expired, failed).",
            ["action", "outcome"],
            registry=r,
        )
        self.action_duration = Histogram(
            "watchkeeper_action_duration_seconds",
            "Time of one remediation decision: plan, guards, apply with its retries.",
            ["action"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.action_failures = Counter(
            "watchkeeper_action_failures_total",
            "Remediations that failed (retries used up, or a final error), by action kind.",
            ["action"],
            registry=r,
        )
        self.action_duplicates = Counter(
            "watchkeeper_action_duplicates_total",
            "Action entries of re-sent or redelivered alerts whose decision was already taken (nothing done).",
            registry=r,
        )
        self.actions_pending = Gauge(
            "watchkeeper_actions_pending_approval",
            "Remediations waiting for a person to approve them.",
            registry=r,
        )
        self.action_targets_refused = Counter(
            "watchkeeper_action_targets_refused_total",
            "Action targets refused before any request (namespace allow-list, Kubernetes names, the rule's "
            "allowed model/prompt names), by action kind and guard.",
            ["action", "guard"],
            registry=r,
        )
        self.rules_last_reload_ok = Gauge(
            "watchkeeper_rules_last_reload_successful",
            "1 if the last rules load succeeded, else 0 (the old rules keep running).",
            registry=r,
        )
        # fleet mode (fleet.py): partitions owned, their checkpoints and their lag
        self.partitions_owned = Gauge(
            "watchkeeper_partitions_owned",
            "Event partitions this member owns (its consumer group assignment), by topic.",
            ["topic"],
            registry=r,
        )
        self.partition_lagging = Gauge(
            "watchkeeper_partition_lagging",
            "1 while a partition is more than the lag threshold behind its high-water mark.",
            ["topic", "partition"],
            registry=r,
        )
        self.partition_event_time = Gauge(
            "watchkeeper_partition_event_time_seconds",
            "Event time (epoch seconds) a partition's processing has reached; time() minus it is its delay.",
            ["topic", "partition"],
            registry=r,
        )
        self.checkpoints = Counter(
            "watchkeeper_checkpoints_total", "Partition checkpoints, by outcome (written, failed).", ["outcome"], registry=r
        )
        self.checkpoint_bytes = Counter(
            "watchkeeper_checkpoint_bytes_total", "Bytes written to the state topic by checkpoints.", registry=r
        )
        self.checkpoint_offset = Gauge(
            "watchkeeper_checkpoint_offset",
            "Offset (next to read) of the latest checkpoint written or restored, by partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.checkpoint_restores = Counter(
            "watchkeeper_checkpoint_restores_total",
            "Assigned partitions, by how their state started: restored (decoded from the state topic), "
            "kept (given back after a rebalance, live state reused), fresh, corrupt, unreadable.",
            ["outcome"],
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "watchkeeper_checkpoint_seconds",
            "Time to encode one round of partition checkpoints, or to write it (stage).",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        # issue 12, item 7: what producers' label values can make the agent remember
        self.series_refused = Counter(
            "watchkeeper_series_refused_total",
            "New series refused a place (their source's share of max_series held only proven series or alerts), by source.",
            ["source"],
            registry=r,
        )
        self.alerts_refused = Counter(
            "watchkeeper_alerts_refused_total",
            "New alerts refused because max_active_alerts pending or firing alerts were held.",
            registry=r,
        )
        self.alerts_orphaned = Counter(
            "watchkeeper_alerts_orphaned_total",
            "Alert evaluations that found no series state (the alert then resolves after keep_firing_for); a bug if ever non-zero.",
            registry=r,
        )
        # drift reports on disk (reports.py): bounded by count and bytes, the oldest deleted first
        self.reports_deleted = Counter(
            "watchkeeper_reports_deleted_total",
            "Drift reports deleted to stay within WATCHKEEPER_REPORT_MAX_COUNT and _MAX_BYTES.",
            registry=r,
        )
        self.reports_bytes = Gauge(
            "watchkeeper_reports_bytes", "Bytes of drift reports kept on disk.", registry=r
        )
        self.reports_kept = Gauge(
            "watchkeeper_reports", "Drift reports kept on disk.", registry=r
        )
        # authenticated internal topics (signing.py): records ignored for a missing or bad signature
        self.records_rejected = Counter(
            "watchkeeper_records_rejected_total",
            "Records on the alerts, audit or state topic ignored because their signature is missing or wrong, "
            "by topic and reason (unsigned, malformed, unknown_key, bad_signature); counted by each reader.",
            ["topic", "reason"],
            registry=r,
        )
        # issue 12: a partition whose batch keeps failing (stall.py)
        self.partition_stalled = Gauge(
            "watchkeeper_partition_stalled",
            "1 while a partition cannot advance: its batch at the same offset failed stall_batches times in a row.",
            ["topic", "partition"],
            registry=r,
        )
        # rule hot reload (reload.py): why a reload was refused; the old rules keep running
        self.rule_reload_failures = Counter(
            "watchkeeper_rule_reload_failures_total",
            "Rule reloads refused, by reason: invalid (a RuleError: the file is wrong), resources "
            "(RecursionError or MemoryError while loading), internal (any other exception while "
            "loading), apply (the new rules could not be put in place), watch (the files could not be stat'ed).",
            ["reason"],
            registry=r,
        )
        self.action_verifications = Counter(
            "watchkeeper_action_verifications_total",
            "Verifications of executed actions (actions/verify.py), by action kind and outcome "
            "(recovered, not_recovered, inconclusive).",
            ["action", "outcome"],
            registry=r,
        )
