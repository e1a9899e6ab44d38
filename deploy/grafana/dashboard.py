"""Build Watchkeeper's Grafana dashboard (JSON) from a short list of panels.

    python deploy/grafana/dashboard.py        # rewrites watchkeeper.json here and its Kubernetes copy

The dashboard is generated so that every query is one readable line below; a test
checks that the committed JSON matches this script's output and that every metric it
queries is one the agent (agent/runtime/selfmetrics.py) or the emitter exports.
The Prometheus data source is a dashboard variable, so the JSON imports anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUTS = (HERE / "watchkeeper.json", HERE.parent / "kubernetes" / "base" / "dashboards" / "watchkeeper.json")
DS = {"type": "prometheus", "uid": "${datasource}"}

# (row title, [(panel title, unit, [(PromQL, legend)], kind)])
ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]], str]]]] = [
    ("Ingestion", [
        ("Events consumed /s", "ops", [("sum by (source, outcome) (rate(watchkeeper_events_total[$__rate_interval]))", "{{source}} {{outcome}}")], "timeseries"),
        ("Dead letters /s by reason", "ops", [("sum by (topic, reason) (rate(watchkeeper_dead_letters_total[$__rate_interval]))", "{{topic}} {{reason}}")], "timeseries"),
        ("Consumer lag", "short", [("sum by (topic) (watchkeeper_consumer_lag)", "{{topic}}")], "timeseries"),
        ("Batch duration p50 / p99", "s", [
            ("histogram_quantile(0.5, sum by (le) (rate(watchkeeper_batch_duration_seconds_bucket[$__rate_interval])))", "p50"),
            ("histogram_quantile(0.99, sum by (le) (rate(watchkeeper_batch_duration_seconds_bucket[$__rate_interval])))", "p99"),
        ], "timeseries"),
    ]),
    ("Alerts", [
        ("Alerts pending / firing", "short", [("sum by (state) (watchkeeper_alerts)", "{{state}}")], "timeseries"),
        ("Alert transitions /s", "ops", [("sum by (state) (rate(watchkeeper_alert_transitions_total[$__rate_interval]))", "{{state}}")], "timeseries"),
        ("Active findings /s by alert", "ops", [("topk(10, sum by (alertname) (rate(watchkeeper_findings_total[$__rate_interval])))", "{{alertname}}")], "timeseries"),
        ("Alertmanager posts /s", "ops", [
            ("sum by (url, outcome) (rate(watchkeeper_alertmanager_sends_total[$__rate_interval]))", "{{url}} {{outcome}}"),
            ("sum by (url) (rate(watchkeeper_alertmanager_send_failures_total[$__rate_interval]))", "{{url}} failures"),
        ], "timeseries"),
        ("Notifications waiting for Alertmanager", "short", [("max(watchkeeper_alertmanager_pending_notifications)", "pending")], "stat"),
    ]),
    ("Remediation", [
        ("Action decisions /s by outcome", "ops", [("sum by (action, outcome) (rate(watchkeeper_actions_total[$__rate_interval]))", "{{action}} {{outcome}}")], "timeseries"),
        ("Action failures (1h)", "short", [("sum by (action) (increase(watchkeeper_action_failures_total[1h]))", "{{action}}")], "timeseries"),
        ("Action duration p95", "s", [("histogram_quantile(0.95, sum by (action, le) (rate(watchkeeper_action_duration_seconds_bucket[$__rate_interval])))", "{{action}}")], "timeseries"),
        ("Waiting for approval", "short", [("max(watchkeeper_actions_pending_approval)", "pending")], "stat"),
    ]),
    ("Rules and state", [
        ("Rules loaded", "short", [("max(watchkeeper_rules)", "rules")], "stat"),
        ("Last reload OK", "bool_yes_no", [("min(watchkeeper_rules_last_reload_successful)", "ok")], "stat"),
        ("Rule reloads /s", "ops", [("sum by (outcome) (rate(watchkeeper_rules_reloads_total[$__rate_interval]))", "{{outcome}}")], "timeseries"),
        ("Series held / evicted /s", "short", [
            ("sum(watchkeeper_series)", "held"),
            ("sum(rate(watchkeeper_series_evicted_total[$__rate_interval]))", "evicted /s"),
        ], "timeseries"),
        ("Detector update p99 by kind", "s", [("histogram_quantile(0.99, sum by (kind, le) (rate(watchkeeper_detector_update_seconds_bucket[$__rate_interval])))", "{{kind}}")], "timeseries"),
    ]),
    ("Fleet and checkpoints", [
        ("Partitions owned per agent", "short", [("sum by (instance) (watchkeeper_partitions_owned)", "{{instance}}")], "timeseries"),
        ("Processing delay (event time) by partition", "s", [("time() - max by (topic, partition) (watchkeeper_partition_event_time_seconds)", "{{topic}}/{{partition}}")], "timeseries"),
        ("Lagging partitions", "short", [("sum by (topic) (watchkeeper_partition_lagging)", "{{topic}}")], "timeseries"),
        ("Checkpoints /s by outcome", "ops", [
            ("sum by (outcome) (rate(watchkeeper_checkpoints_total[$__rate_interval]))", "{{outcome}}"),
            ("sum by (outcome) (rate(watchkeeper_checkpoint_restores_total[$__rate_interval]))", "restore {{outcome}}"),
        ], "timeseries"),
        ("Checkpoint time p95 by stage", "s", [("histogram_quantile(0.95, sum by (stage, le) (rate(watchkeeper_checkpoint_seconds_bucket[$__rate_interval])))", "{{stage}}")], "timeseries"),
    ]),
    ("Emitters (in the services)", [
        ("Events sent /s", "ops", [("sum by (job, client_id) (rate(watchkeeper_emit_sent_total[$__rate_interval]))", "{{job}} {{client_id}}")], "timeseries"),
        ("Dropped /s by reason", "ops", [("sum by (job, reason) (rate(watchkeeper_emit_dropped_total[$__rate_interval]))", "{{job}} {{reason}}")], "timeseries"),
        ("Send errors /s", "ops", [("sum by (job) (rate(watchkeeper_emit_errors_total[$__rate_interval]))", "{{job}}")], "timeseries"),
        ("Buffer fill", "percentunit", [("max by (job, client_id) (watchkeeper_emit_buffered / watchkeeper_emit_buffer_capacity)", "{{job}} {{client_id}}")], "timeseries"),
    ]),
]


def _panel(pid: int, title: str, unit: str, targets: list[tuple[str, str]], kind: str, x: int, y: int, w: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 7 if kind == "timeseries" else 4, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend} for i, (expr, legend) in enumerate(targets)],
    }


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y, pid = 0, 1
    for row, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        w = 24 // len(row_panels) if len(row_panels) <= 4 else 8
        x = 0
        for title, unit, targets, kind in row_panels:
            panels.append(_panel(pid, title, unit, targets, kind, x, y, w))
            pid += 1
            x += w
            if x + w > 24:
                x, y = 0, y + 7
        y += 7 if x else 0
    return {
        "uid": "watchkeeper",
        "title": "Watchkeeper",
        "description": "The Watchkeeper agent's own health: ingestion, alerts, remediation, rules, and the emitters in the services.",
        "tags": ["watchkeeper", "mlops"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = render()
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
