"""Fleet mode against the real broker: split partitions, SIGKILL mid-incident, restart mid-series,
and a partition far behind the others.

Every test runs the same incident shape on several services, one event per service
every half second of event time on a shared grid: healthy, then 400 ms requests for
25 s (a mean over 10 s above 300 ms: pending, firing 4 s later), then healthy again
(resolved 4 s after the mean drops). The expected alerts come from a ``Pipeline`` fed
the same events in one uninterrupted pass (``reference``), so "the same alerts at the
same event times" is checked against what the decision path alone says.

Pages are counted where people see them: Slack messages from the real Alertmanager.
Alert transitions on the alerts topic may repeat after a crash (records processed again
after the last checkpoint); what must never happen is a second incident (a new
``active_at``) or a resolution while the condition still holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.model import Alert, AlertState
from agent.rules import load_rules
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.embedded_broker import EmbeddedBroker, create_topics
from agent.runtime.pipeline import Pipeline
from agent.runtime.selfmetrics import SelfMetrics
from tests.integration.harness import (
    Transitions,
    agent_config,
    agent_env,
    eventually,
    free_port,
    inference,
    rule_file,
    running_agent,
    topics_for,
    unique_name,
)
from tests.integration.test_at_least_once import _tail, agent_process
from tests.kafka_tools import consume, produce
from tests.testbed import Alertmanager, SlackRecorder

pytestmark = pytest.mark.integration

PARTITIONS = 8
STEP_S = 0.5
BAD = (20.0, 45.0)  # seconds after t0 with 400 ms requests


def incident_rules(path: Path, alertname: str) -> Path:
    path.write_text(rule_file(alertname, threshold=300, window_s=10, min_count=3, for_s=4, keep_firing_for_s=4))
    return path


def grid(services: list[str], t0: float, start_s: float, end_s: float) -> list[tuple[str, bytes]]:
    """Every service's events from ``t0 + start_s`` to ``t0 + end_s`` (exclusive), in time order."""
    out = []
    k = round(start_s / STEP_S)
    while k * STEP_S < end_s:
        s = k * STEP_S
        latency = 400.0 if BAD[0] <= s < BAD[1] else 40.0 + k % 7
        out.extend((svc, inference(svc, latency, t0 + s)) for svc in services)
        k += 1
    return out


def reference(rules: Path, produced: list[tuple[tuple[str, int], bytes]]) -> set[tuple[Any, ...]]:
    """The transitions of one uninterrupted pass, every partition judged at its own clock."""
    from agent.runtime.ingest import parse_event

    pipeline = Pipeline(load_rules((str(rules),)))
    pipeline.held = {where for where, _ in produced}
    out: list[Alert] = []
    for where, value in produced:
        out += pipeline.process(parse_event(value, 1 << 20), where)
        out += pipeline.tick()
    return {incident(a) for a in out}


def incident(a: Alert) -> tuple[Any, ...]:
    return (a.labels["service"], a.state.value, a.active_at, a.fired_at, a.resolved_at)


async def produce_where(bootstrap: str, topic: str, events: list[tuple[str, bytes]]) -> list[tuple[tuple[str, int], bytes]]:
    meta = await produce(bootstrap, topic, events)
    return [((topic, m.partition), value) for m, (_, value) in zip(meta, events, strict=True)]


async def alerts_on_topic(bootstrap: str, topic: str) -> list[Alert]:
    return [Alert.from_dict(json.loads(r.value)) for r in await consume(bootstrap, topic, timeout_s=5)]


def pages(slack: SlackRecorder, alertname: str, status: str, service: str) -> int:
    title = f"[{status.upper()}] {alertname}"
    return sum(
        1
        for m in list(slack.messages)
        for a in m.get("attachments", [])
        if a.get("title") == title and f" service={service} " in a.get("text", "")
    )


async def paged(slack: SlackRecorder, alertname: str, status: str, services: list[str], timeout_s: float) -> None:
    """Wait until Slack has a ``status`` message for every service's alert."""
    for svc in services:
        await asyncio.to_thread(slack.wait_for, lambda m, s=svc: pages(slack, alertname, status, s) > 0, timeout_s)


class Scraper:
    """Reads a subprocess agent's /metrics."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = f"http://{env['WATCHKEEPER_HTTP_ADDR']}/metrics"

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        try:
            async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
                text = (await client.get(self.url)).text
        except httpx.HTTPError:
            return {}
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def value(self, name: str, **labels: str) -> float:
        return (await self.samples()).get((name, tuple(sorted(labels.items()))), 0.0)

    async def checkpointed(self, topic: str) -> dict[int, int]:
        return {
            int(dict(labels)["partition"]): int(v)
            for (name, labels), v in (await self.samples()).items()
            if name == "watchkeeper_checkpoint_offset" and dict(labels).get("topic") == topic
        }


async def next_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    records = await consume(bootstrap, topic, timeout_s=5)
    out: dict[int, int] = {}
    for r in records:
        out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
    return out


# --- 1. two agents split the partitions and page each alert once ----------------------
async def test_two_agents_split_the_partitions_and_page_each_alert_exactly_once(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    alertname = unique_name("WkFleetSplit")
    services = [unique_name(f"split{i}") for i in range(8)]
    rules = incident_rules(tmp_path / "rules.yaml", alertname)
    config = agent_config(broker.bootstrap, unique_topic, rules, state_topic=unique_topic("state"), checkpoint_interval_s=0.5)
    topic = config.topics.inference
    await create_topics(broker.bootstrap, [topic], partitions=PARTITIONS)
    seen_a, seen_b = Transitions(), Transitions()
    t0 = time.time() - 300

    async with (
        AlertmanagerClient([alertmanager.url], metrics=SelfMetrics()) as client,
        running_agent(config, client, on_transition=seen_a) as a,
        running_agent(replace(config), client, on_transition=seen_b) as b,
    ):

        def owned(app: Any) -> set[int]:
            return {p for t, p in app.fleet.owned if t == topic}

        await eventually(
            lambda: owned(a) and owned(b) and len(owned(a)) + len(owned(b)) == PARTITIONS and not owned(a) & owned(b),
            timeout_s=30,
            what="two agents splitting the 8 partitions",
            detail=lambda: f"a owns {sorted(owned(a))}, b owns {sorted(owned(b))}",
        )
        # firing first (Alertmanager pages only what fires longer than its group_wait), then recovery
        produced = await produce_where(broker.bootstrap, topic, grid(services, t0, 0, 32))
        await paged(slack_recorder, alertname, "firing", services, 30)
        produced += await produce_where(broker.bootstrap, topic, grid(services, t0, 32, 80))
        expected = reference(rules, produced)
        await eventually(
            lambda: len(seen_a.of(AlertState.RESOLVED)) + len(seen_b.of(AlertState.RESOLVED)) >= len(services),
            timeout_s=60,
            what="every service's alert to fire and resolve",
            detail=lambda: f"a: {len(seen_a.alerts)} transitions, b: {len(seen_b.alerts)}",
        )
        await paged(slack_recorder, alertname, "resolved", services, 30)
        partition_of = {json.loads(v)["service"]: p for (_, p), v in produced}
        by_a = {a_.labels["service"] for a_ in seen_a.alerts}
        by_b = {a_.labels["service"] for a_ in seen_b.alerts}
        assert by_a and by_b, "both agents must have paged some services"
        assert all(partition_of[s] in owned(a) for s in by_a) and all(partition_of[s] in owned(b) for s in by_b)

    got = seen_a.alerts + seen_b.alerts
    assert len(got) == 2 * len(services), [incident(x) for x in got]  # one FIRING, one RESOLVED each: no duplicate
    assert {incident(x) for x in got} == expected
    for svc in services:
        assert pages(slack_recorder, alertname, "firing", svc) == 1, svc
        assert pages(slack_recorder, alertname, "resolved", svc) == 1, svc


# --- 2. SIGKILL one of two agents mid-incident ------------------------------------------
async def test_sigkill_one_agent_mid_incident_the_survivor_neither_duplicates_nor_drops(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    alertname = unique_name("WkFleetKill")
    services = [unique_name(f"kill{i}") for i in range(10)]
    rules = incident_rules(tmp_path / "rules.yaml", alertname)
    topics = topics_for(unique_topic)
    group = unique_name("wk-fleet")
    common = {
        "WATCHKEEPER_GROUP_ID": group,
        "WATCHKEEPER_STATE_TOPIC": unique_topic("state"),
        "WATCHKEEPER_CHECKPOINT_INTERVAL": "0.5",
        "WATCHKEEPER_ALERTMANAGER_URL": alertmanager.url,
        "WATCHKEEPER_KAFKA_SESSION_TIMEOUT_MS": "1500",
        "WATCHKEEPER_LOG_LEVEL": "info",
    }
    env_a, env_b = agent_env(broker.bootstrap, topics, rules, **common), agent_env(broker.bootstrap, topics, rules, **common)
    await create_topics(broker.bootstrap, [topics.inference], partitions=PARTITIONS)
    t0 = time.time() - 300
    metrics_a, metrics_b = Scraper(env_a), Scraper(env_b)

    async def owned(m: Scraper) -> int:
        return int(await m.value("watchkeeper_partitions_owned", topic=topics.inference))

    log_a, log_b = tmp_path / "agent-a.log", tmp_path / "agent-b.log"
    with agent_process(env_a, log_a) as proc_a, agent_process(env_b, log_b) as proc_b:
        split: dict[str, int] = {}

        async def both_own() -> bool:
            split["a"], split["b"] = await owned(metrics_a), await owned(metrics_b)
            return split["a"] > 0 and split["b"] > 0 and split["a"] + split["b"] == PARTITIONS

        await _eventually_async(both_own, 60, "both agents to own partitions", lambda: f"{split}\n{_tail(log_a)}\n{_tail(log_b)}")

        # phase 1: up to 32 s, mid-incident: every alert fires at 25.5 s and keeps firing
        phase1 = await produce_where(broker.bootstrap, topics.inference, grid(services, t0, 0, 32))
        phase1_ends = await next_offsets(broker.bootstrap, topics.inference)

        async def checkpointed_phase1() -> bool:
            done = {**await metrics_a.checkpointed(topics.inference), **await metrics_b.checkpointed(topics.inference)}
            return all(done.get(p) == o for p, o in phase1_ends.items())

        await _eventually_async(checkpointed_phase1, 30, "checkpoints of phase 1 on every partition")
        await paged(slack_recorder, alertname, "firing", services, 30)
        a_owned = await owned(metrics_a)
        a_checkpointed = await metrics_a.checkpointed(topics.inference)  # the victim's partitions with events
        os.kill(proc_a.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        proc_a.wait(timeout=10)

        # phase 2: the incident goes on, then recovers; only the survivor is left to see it
        phase2 = await produce_where(broker.bootstrap, topics.inference, grid(services, t0, 32, 80))

        async def survivor_owns_all() -> bool:
            return await owned(metrics_b) == PARTITIONS

        await _eventually_async(survivor_owns_all, 30, "the survivor to take every partition", lambda: _tail(log_b))
        took_s = time.monotonic() - killed_at
        await paged(slack_recorder, alertname, "resolved", services, 60)
        restored = await metrics_b.value("watchkeeper_checkpoint_restores_total", outcome="restored")
        assert proc_b.poll() is None, _tail(log_b)

    print(f"\nfleet SIGKILL: the survivor owned all {PARTITIONS} partitions {took_s:.1f} s after the kill ({a_owned} were the victim's)")
    assert restored >= len(a_checkpointed) > 0, "the survivor must restore the victim's partitions from their checkpoints"
    expected = reference(rules, phase1 + phase2)
    published = await alerts_on_topic(broker.bootstrap, topics.alerts)
    assert {incident(x) for x in published} == expected  # nothing dropped, no second incident
    for svc in services:
        assert pages(slack_recorder, alertname, "firing", svc) == 1, svc
        assert pages(slack_recorder, alertname, "resolved", svc) == 1, svc


# --- 3. restart one agent mid-series ----------------------------------------------------
async def test_restart_mid_series_gives_the_alerts_of_an_uninterrupted_run(
    broker: EmbeddedBroker,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    alertname = unique_name("WkFleetRestart")
    services = [unique_name(f"restart{i}") for i in range(6)]
    rules = incident_rules(tmp_path / "rules.yaml", alertname)
    topics = topics_for(unique_topic)
    env = agent_env(
        broker.bootstrap,
        topics,
        rules,
        WATCHKEEPER_STATE_TOPIC=unique_topic("state"),
        WATCHKEEPER_CHECKPOINT_INTERVAL="2",
        WATCHKEEPER_KAFKA_SESSION_TIMEOUT_MS="1000",
    )
    await create_topics(broker.bootstrap, [topics.inference], partitions=PARTITIONS)
    t0 = time.time() - 300
    scraper = Scraper(env)
    produced = await produce_where(broker.bootstrap, topics.inference, grid(services, t0, 0, 26))
    first_ends = await next_offsets(broker.bootstrap, topics.inference)

    with agent_process(env, tmp_path / "first.log") as first:

        async def checkpointed() -> bool:
            done = await scraper.checkpointed(topics.inference)
            return all(done.get(p) == o for p, o in first_ends.items())

        await _eventually_async(checkpointed, 30, "a checkpoint of every partition at 26 s", lambda: _tail(tmp_path / "first.log"))
        # more records after that checkpoint: the restarted agent processes them again
        produced += await produce_where(broker.bootstrap, topics.inference, grid(services, t0, 26, 32))
        total = len(produced)

        async def processed() -> bool:
            return await scraper.value("watchkeeper_events_total", source="inference", outcome="processed") >= total

        await _eventually_async(processed, 30, "the first agent to process up to 32 s")
        os.kill(first.pid, signal.SIGKILL)  # mid-incident: every alert is firing
        first.wait(timeout=10)

    produced += await produce_where(broker.bootstrap, topics.inference, grid(services, t0, 32, 80))
    env["WATCHKEEPER_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
    scraper = Scraper(env)
    with agent_process(env, tmp_path / "second.log") as second:

        async def all_resolved() -> bool:
            published = await alerts_on_topic(broker.bootstrap, topics.alerts)
            return len({a.labels["service"] for a in published if a.state is AlertState.RESOLVED}) == len(services)

        await _eventually_async(all_resolved, 60, "every alert to resolve after the restart", lambda: _tail(tmp_path / "second.log"))
        restored = await scraper.value("watchkeeper_checkpoint_restores_total", outcome="restored")
        assert second.poll() is None

    # the uninterrupted run: a second agent (its own group and alerts topic) over the same events
    config = agent_config(
        broker.bootstrap, unique_topic, rules, topics=replace(topics, alerts=unique_topic("alerts-ref")), state_topic=unique_topic("state")
    )
    uninterrupted = Transitions()
    async with running_agent(config, _NullSink(), on_transition=uninterrupted):
        await eventually(
            lambda: len(uninterrupted.of(AlertState.RESOLVED)) == len(services),
            timeout_s=60,
            what="the uninterrupted run to resolve every alert",
        )
    published = await alerts_on_topic(broker.bootstrap, topics.alerts)
    assert restored >= len(first_ends)  # every partition with events came back from its checkpoint
    assert {incident(a) for a in published} == {incident(a) for a in uninterrupted.alerts} == reference(rules, produced)
    fired = [a for a in published if a.state is AlertState.FIRING]
    assert len({(a.fingerprint, a.active_at) for a in fired}) == len(services)  # one incident each, restart or not


class _NullSink:
    async def deliver(self, alerts: Any, *, stop: Any = None) -> bool:
        return True


async def _eventually_async(check: Callable[[], Any], timeout_s: float, what: str, detail: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}" + (f"\n{detail()}" if detail else ""))
        await asyncio.sleep(0.1)


# --- 4. a partition far behind the others ------------------------------------------------
async def test_a_partition_far_behind_the_others_gets_the_alerts_its_own_events_decide(
    broker: EmbeddedBroker,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """Four partitions run 10 minutes of event time ahead, then the other four replay an incident.

    Judged at the global clock (the fast partitions' time), the late partitions' alerts
    would be stale on arrival and never fire, or resolve at once; judged at their own
    clock they give exactly the alerts of the reference. The agent runs with the
    production idle rule (1 s here): the late partitions were quiet and caught up, so
    they followed the global clock until their records came.
    """
    alertname = unique_name("WkFleetLag")
    ahead, behind = [unique_name(f"ahead{i}") for i in range(4)], [unique_name(f"behind{i}") for i in range(4)]
    rules = incident_rules(tmp_path / "rules.yaml", alertname)
    config = agent_config(broker.bootstrap, unique_topic, rules, state_topic=unique_topic("state"), idle_advance_s=1.0)
    topic = config.topics.inference
    await create_topics(broker.bootstrap, [topic], partitions=PARTITIONS)
    pinned = {svc: i for i, svc in enumerate(ahead + behind)}  # partitions 0-3 ahead, 4-7 behind
    t0 = time.time() - 1200
    seen = Transitions()
    metrics = SelfMetrics()

    def processed() -> float:
        return metrics.registry.get_sample_value("watchkeeper_events_total", {"source": "inference", "outcome": "processed"}) or 0.0

    async with running_agent(config, _NullSink(), metrics=metrics, on_transition=seen) as app:
        await eventually(lambda: len([w for w in app.fleet.owned if w[0] == topic]) == PARTITIONS, timeout_s=30, what="the agent to own the partitions")
        produced = await produce_pinned(broker.bootstrap, topic, grid(ahead, t0, 0, 600), pinned)
        await eventually(lambda: processed() >= len(produced), timeout_s=60, what="the fast partitions to be processed")
        await asyncio.sleep(2.5)  # the late partitions are quiet and caught up: they follow the global clock now
        produced += await produce_pinned(broker.bootstrap, topic, grid(behind, t0, 0, 80), pinned)
        await eventually(
            lambda: {a.labels["service"] for a in seen.of(AlertState.RESOLVED)} >= set(behind),
            timeout_s=60,
            what="the late partitions' alerts to fire and resolve",
            detail=lambda: str([incident(a) for a in seen.alerts]),
        )
        late_clock = metrics.registry.get_sample_value("watchkeeper_partition_event_time_seconds", {"topic": topic, "partition": "4"})
    assert {incident(a) for a in seen.alerts} == reference(rules, produced)
    assert len(seen.of(AlertState.FIRING)) == len(ahead) + len(behind)
    assert late_clock == pytest.approx(t0 + 79.5)


async def produce_pinned(
    bootstrap: str, topic: str, events: list[tuple[str, bytes]], partition_of: dict[str, int]
) -> list[tuple[tuple[str, int], bytes]]:
    """Send each service's events to a chosen partition (the test needs disjoint fast and slow ones)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sends = [await producer.send(topic, value=v, key=svc.encode(), partition=partition_of[svc]) for svc, v in events]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return [((topic, partition_of[svc]), v) for svc, v in events]
