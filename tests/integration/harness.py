"""Run real agents against the session's real servers: rule files, events, waits, metrics.

Every integration test builds its own agent (its own topics, consumer group and rule
file, written under ``tmp_path``) so no test reads another's data. Short Kafka timeouts
make a consumer-group join take about a second on Tansu (see ``../shared/TESTBED.md``).
Nothing here sleeps for a fixed time: :func:`eventually` polls a condition against a
deadline and says what it was waiting for when the deadline passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.config import AgentConfig, KafkaConfig, Topics
from agent.model import Alert, AlertState
from agent.runtime.app import AgentApp
from agent.runtime.notifier import AlertSink
from agent.runtime.selfmetrics import SelfMetrics

__all__ = [
    "AGENT_COMMAND",
    "REPO_ROOT",
    "Transitions",
    "agent_config",
    "agent_env",
    "eventually",
    "free_port",
    "inference",
    "rule_file",
    "running_agent",
    "sample",
    "slack_about",
    "topics_for",
    "unique_name",
    "write_atomically",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_POLL_S = 0.02  # how often eventually() looks again; the deadline bounds every wait

UniqueTopic = Callable[[str], str]


def unique_name(prefix: str) -> str:
    """An alert name no other test (or earlier run against the same Slack recorder) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def rule_file(
    alertname: str,
    *,
    threshold: float,
    window_s: int = 10,
    min_count: int = 3,
    for_s: int = 0,
    keep_firing_for_s: int = 0,
) -> str:
    """One mean-latency threshold rule per service, shaped like ``rules/inference.yaml``."""
    return f"""\
groups:
  - name: it
    rules:
      - alert: {alertname}
        source: inference
        by: [service]
        detector:
          kind: threshold
          field: latency_ms
          agg: mean
          window_s: {window_s}s
          op: ">"
          threshold: {threshold}
          min_count: {min_count}
        for: {for_s}s
        keep_firing_for: {keep_firing_for_s}s
        labels:
          severity: page
          team: watchkeeper-it
        annotations:
          summary: 'mean latency of {{{{ $labels.service }}}} is {{{{ $value | printf "%.0f" }}}} ms'
          limit: '{{{{ $evidence.threshold }}}} ms'
"""


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step (as a ConfigMap update does): no reader sees half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def inference(service: str, latency_ms: float, ts: float, **more: Any) -> bytes:
    """A valid inference event (agent/model.py) as the bytes a producer would send."""
    event = {
        "type": "inference",
        "ts": ts,
        "service": service,
        "model": "ranker",
        "model_version": "7",
        "latency_ms": latency_ms,
        "status": "ok",
        **more,
    }
    return json.dumps(event).encode()


def topics_for(unique_topic: UniqueTopic) -> Topics:
    return Topics(
        inference=unique_topic("inference"),
        llm=unique_topic("llm"),
        gpu=unique_topic("gpu"),
        retrieval=unique_topic("retrieval"),
        feedback=unique_topic("feedback"),
        dlq=unique_topic("dlq"),
        alerts=unique_topic("alerts"),
    )


def agent_config(bootstrap: str, unique_topic: UniqueTopic, rules: Path, **overrides: Any) -> AgentConfig:
    """A config for one test's agent: own topics (created with 4 partitions) and group."""
    config = AgentConfig(
        kafka=KafkaConfig(
            bootstrap,
            group_id=unique_name("wk-it"),
            batch_timeout_ms=50,
            session_timeout_ms=2000,
            heartbeat_interval_ms=200,
        ),
        rules=(str(rules),),
        topics=topics_for(unique_topic),
        http_addr="127.0.0.1:0",
        create_topics=4,
        # Event time moves with the events only: an idle tick (+1 s of event time per
        # second of quiet) could expire a window while a test waits on Slack.
        idle_advance_s=600.0,
        # beside the test's rule file (its tmp_path), never in the checkout
        report_dir=str(Path(rules).parent / "drift-reports"),
        # the key that signs the alerts/audit/state records, created on first start (tests sign with it too)
        topic_keys_file=str(Path(rules).parent / "topic-keys"),
        # The tests replay history: events minutes or hours old, sent now. Event time is
        # trusted as sent (the skew bound has its own tests, test_event_time_trust.py).
        max_event_skew_s=0.0,
    )
    return replace(config, **overrides)


@asynccontextmanager
async def running_agent(
    config: AgentConfig,
    sink: AlertSink,
    *,
    metrics: SelfMetrics | None = None,
    on_transition: Callable[[Alert], None] | None = None,
) -> AsyncIterator[AgentApp]:
    """An ``AgentApp`` started for the ``async with`` body and always stopped after it."""
    app = AgentApp(config, sink, metrics=metrics, on_transition=on_transition, serve_http=False)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


class Transitions:
    """Collects the alert transitions an agent publishes (its ``on_transition`` hook)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def __call__(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def of(self, state: AlertState, service: str | None = None) -> list[Alert]:
        return [a for a in self.alerts if a.state is state and (service is None or a.labels.get("service") == service)]


async def eventually(
    condition: Callable[[], bool], *, timeout_s: float, what: str, detail: Callable[[], str] | None = None
) -> None:
    """Return once ``condition()`` is true; fail with ``what`` (and ``detail()``) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{extra}")
        await asyncio.sleep(_POLL_S)


def sample(registry: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None) -> float:
    """A metric sample's value, 0.0 when the labelled child does not exist yet."""
    value = registry.get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value


def slack_about(alertname: str, status: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the Slack message tests/testbed.py's Alertmanager config sends for one alert."""

    def match(message: dict[str, Any]) -> bool:
        return any(
            a.get("title") == f"[{status.upper()}] {alertname}" and f"status: {status}" in a.get("text", "")
            for a in message.get("attachments", [])
        )

    return match


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_env(bootstrap: str, topics: Topics, rules: Path, **more: str) -> dict[str, str]:
    """Environment for a ``watchkeeper run`` subprocess: own topics, group, short timeouts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        {
            "WATCHKEEPER_KAFKA_BOOTSTRAP": bootstrap,
            "WATCHKEEPER_RULES": str(rules),
            "WATCHKEEPER_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            "WATCHKEEPER_GROUP_ID": unique_name("wk-it"),
            "WATCHKEEPER_TOPIC_INFERENCE": topics.inference,
            "WATCHKEEPER_TOPIC_LLM": topics.llm,
            "WATCHKEEPER_TOPIC_GPU": topics.gpu,
            "WATCHKEEPER_TOPIC_RETRIEVAL": topics.retrieval,
            "WATCHKEEPER_TOPIC_FEEDBACK": topics.feedback,
            # as in agent_config: the tests replay history, so event time is trusted as sent
            "WATCHKEEPER_MAX_EVENT_SKEW_S": "0",
            "WATCHKEEPER_TOPIC_DLQ": topics.dlq,
            "WATCHKEEPER_TOPIC_ALERTS": topics.alerts,
            "WATCHKEEPER_CREATE_TOPICS": "4",
            "WATCHKEEPER_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "WATCHKEEPER_KAFKA_HEARTBEAT_INTERVAL_MS": "200",
            "WATCHKEEPER_ALERTMANAGER_URL": "",
            "WATCHKEEPER_TOPIC_KEYS_FILE": str(Path(rules).parent / "topic-keys"),
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update(more)
    return env


AGENT_COMMAND = [sys.executable, "-m", "agent.cli", "run"]
