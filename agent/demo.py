"""``watchkeeper demo``: the whole path on embedded defaults, in about half a minute.

Starts the embedded broker (unless ``WATCHKEEPER_KAFKA_BOOTSTRAP`` names one), the agent
with the shipped rules, and two simulated inference services. Six minutes of their
traffic are replayed in event time with two faults injected: a latency spike on
``checkout`` and an error burst on ``search``. Pages go to Alertmanager when one is
configured, else to the terminal. The error-ratio rule carries a ``notify`` action in
dry-run mode: its decision (what would have been done, and every guard's verdict) is
audited on the audit topic and printed under the page. The demo exits 0 once both
alerts have fired and resolved and the remediation was decided, 1 if not within the
timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaProducer

from actions.audit import AuditRecord
from agent.config import AgentConfig, KafkaConfig, Topics
from agent.model import Alert, AlertState
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.app import AgentApp
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.topics import create_topics
from agent.runtime.notifier import AlertSink, TerminalSink
from agent.runtime.selfmetrics import SelfMetrics
from simulations import Fault, SimulatedService, generate

__all__ = ["DEFAULT_RULES", "run_demo"]

DEFAULT_RULES = str(Path(__file__).resolve().parent.parent / "rules")

SERVICES = (
    SimulatedService("checkout", "fraud-detector", "7", rate_per_s=20.0, latency_ms=80.0),
    SimulatedService("search", "ranker", "12", rate_per_s=20.0, latency_ms=40.0, latency_jitter_ms=10.0),
)
FAULTS = (
    Fault("latency_spike", "checkout", start_s=60.0, duration_s=90.0, magnitude=10.0),
    Fault("error_burst", "search", start_s=200.0, duration_s=60.0, magnitude=0.3),
)
EXPECTED = {("InferenceHighP99Latency", "checkout"), ("InferenceHighErrorRatio", "search")}
DURATION_S = 360.0


@dataclass
class _WatchingSink:
    """Delivers to the real sink, then shows and remembers what was delivered."""

    primary: AlertSink
    terminal: TerminalSink
    seen: list[Alert] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, alerts: Sequence[Alert], *, stop: asyncio.Event | None = None) -> bool:
        ok = await self.primary.deliver(alerts, stop=stop)
        if ok:
            if self.primary is not self.terminal:
                await self.terminal.deliver(alerts)
            self.seen.extend(alerts)
            self.changed.set()
        return ok

    def done(self) -> bool:
        fired = {(a.name, a.labels.get("service")) for a in self.seen if a.state is AlertState.FIRING}
        resolved = {(a.name, a.labels.get("service")) for a in self.seen if a.state is AlertState.RESOLVED}
        return EXPECTED <= fired and EXPECTED <= resolved


@dataclass
class _AuditPrinter:
    """Shows each remediation decision under the pages, and remembers which alerts got one."""

    out: TextIO
    changed: asyncio.Event
    decided: set[str] = field(default_factory=set)

    def __call__(self, record: AuditRecord) -> None:
        series = ", ".join(f"{k}={v}" for k, v in record.labels.items() if k not in ("alertname", "severity", "team"))
        refused = f" [{record.guard}]" if record.guard else ""
        self.out.write(
            f"{'':10} ACTION   {record.outcome}{refused} {record.action} {record.target.rsplit('/', 1)[0]} "
            f"for {record.alertname} {{{series}}}: {record.reason}\n"
        )
        self.out.flush()
        self.decided.add(record.alertname)
        self.changed.set()


async def _produce(bootstrap: str, topic: str, start_ts: float) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    count = 0
    try:
        sends = []
        for event in generate(SERVICES, FAULTS, start_ts=start_ts, duration_s=DURATION_S, seed=7):
            sends.append(await producer.send(topic, json.dumps(event).encode(), key=event["service"].encode()))
            count += 1
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return count


async def run_demo(
    *,
    bootstrap: str | None = None,
    alertmanager_urls: Sequence[str] = (),
    rules: Sequence[str] = (DEFAULT_RULES,),
    timeout_s: float = 120.0,
    out: TextIO | None = None,
) -> int:
    """Run the demo; returns the process exit status."""
    out = out or sys.stdout
    embedded = None
    if not bootstrap:
        embedded = EmbeddedBroker().start()
        bootstrap = embedded.bootstrap
        out.write(f"demo: embedded Kafka-compatible broker (Tansu) at {bootstrap}\n")
    topics = Topics()
    metrics = SelfMetrics()
    terminal = TerminalSink(out)
    primary: AlertSink = terminal
    if alertmanager_urls:
        primary = AlertmanagerClient(alertmanager_urls, metrics=metrics, resend_interval_s=60.0)
        out.write(f"demo: pages go to Alertmanager at {', '.join(alertmanager_urls)}\n")
    sink = _WatchingSink(primary, terminal)
    config = AgentConfig(
        kafka=KafkaConfig(bootstrap, group_id="watchkeeper-demo", batch_timeout_ms=50, session_timeout_ms=3000, heartbeat_interval_ms=300),
        rules=tuple(rules),
        topics=topics,
        http_addr="127.0.0.1:0",
        idle_advance_s=2.0,
        max_event_skew_s=0.0,  # the demo replays six minutes of traffic at once: event time trusted as sent
    )
    printer = _AuditPrinter(out, sink.changed)
    app = AgentApp(config, sink, metrics=metrics, on_audit=printer)
    with_actions = {r.name for r in app.rules.rules if r.actions} & {name for name, _ in EXPECTED}

    def done() -> bool:
        return sink.done() and with_actions <= printer.decided

    started = time.monotonic()
    try:
        await create_topics(bootstrap, topics.all(), partitions=4)
        await app.start()
        assert app.http is not None
        out.write(f"demo: agent running with {len(app.rules)} rules; metrics at http://127.0.0.1:{app.http.port}/metrics\n")
        start_ts = time.time() - DURATION_S - 60.0
        count = await _produce(bootstrap, topics.inference, start_ts)
        out.write(
            f"demo: replaying {count} events (6 minutes of 2 services) with a latency spike on checkout "
            "and an error burst on search\n"
        )
        out.flush()
        deadline = started + timeout_s
        while not done() and time.monotonic() < deadline:
            sink.changed.clear()
            try:
                await asyncio.wait_for(sink.changed.wait(), timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
    finally:
        await app.stop()
        if isinstance(primary, AlertmanagerClient):
            await primary.aclose()
        if embedded is not None:
            embedded.stop()
    elapsed = time.monotonic() - started
    if done():
        decided = f"; remediation of {', '.join(sorted(with_actions))} decided in dry-run" if with_actions else ""
        out.write(f"demo: OK: both faults paged and resolved{decided} ({elapsed:.1f}s)\n")
        return 0
    missing = f" and remediations of {sorted(with_actions - printer.decided)} decided" if with_actions - printer.decided else ""
    out.write(f"demo: FAILED: expected {sorted(EXPECTED)} to fire and resolve{missing} within {timeout_s:.0f}s\n")
    return 1
