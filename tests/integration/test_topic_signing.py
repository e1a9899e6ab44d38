"""The agent's own topics are authenticated: forged records are ignored, counted, and never stall.

Against the real Tansu broker, a hostile producer that can write to ``watchkeeper.alerts``,
``watchkeeper.audit`` or ``watchkeeper.state`` (no ACLs, or a leaked service credential)
tries to page, to remediate, to approve a pending action and to plant detector state.
Its records are unsigned, signed with a key the agents do not hold, or signed for
another topic role (a genuine signature replayed across topics). Each must be ignored
(no page, no decision, no approval, no restore), counted in
``watchkeeper_records_rejected_total{topic,reason}``, and must not hold back the genuine
records behind it. Key rotation (the new key signs, the old one still verifies) keeps a
fleet's history readable.
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

import httpx
import pytest

from actions.audit import answer_request
from actions.registry import ACTIONS
from agent.actions_cli import answer
from agent.runtime.alertmanager import AlertmanagerClient
from agent.runtime.checkpoint import CheckpointReader, encode_checkpoint, state_key
from agent.runtime.checkpoint_store import CheckpointStore
from agent.runtime.embedded_broker import EmbeddedBroker, create_topics
from agent.runtime.selfmetrics import SelfMetrics
from agent.runtime.signing import TopicRole
from agent.runtime.topic_keys import TopicKeys, load_keys, open_keys
from tests.integration.harness import agent_config, agent_env, rule_file, running_agent, slack_about, eventually, free_port, inference, sample, topics_for, unique_name
from tests.integration.test_at_least_once import _tail, agent_process
from tests.integration.test_fleet import Scraper, _eventually_async, grid, incident_rules, next_offsets, produce_where
from tests.integration.test_remediation import (
    T0,
    RecordingSink,
    decisions,
    firing,
    metric,
    running,
    scenario,
    wait_decisions,
)
from tests.kafka_tools import consume
from tests.signed_records import produce_with_headers, signed_headers
from tests.testbed import Alertmanager, SlackRecorder
from tests.unit.actions.fake_kind import RecordingAction

pytestmark = pytest.mark.integration

ROGUE = TopicKeys.generate()  # a key no agent holds (another fleet's, or guessed)


@pytest.fixture
def recording_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACTIONS, "recording", RecordingAction)


def _keys_file(path: Path, *secrets: str) -> str:
    path.write_text("".join(s + "\n" for s in secrets), encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def rejected(app_metrics: SelfMetrics, topic: str, reason: str) -> float:
    return sample(app_metrics.registry, "watchkeeper_records_rejected_total", {"topic": topic, "reason": reason})


async def test_forged_alerts_are_neither_paged_nor_acted_on_and_genuine_ones_still_flow(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkForgedAlert", "[{type: recording, mode: enforce}]")
    forged = firing(alertname, "forged")
    value = json.dumps(forged.to_dict()).encode()
    key = forged.fingerprint.encode()
    audit_signed = signed_headers(open_keys(config.topic_keys_file), TopicRole.AUDIT, key, value)
    hostile = [
        (key, value, []),  # unsigned
        (key, value, signed_headers(ROGUE, TopicRole.ALERTS, key, value)),  # another key
        (key, value, audit_signed),  # a genuine signature, for the audit topic
        (key, value, [("watchkeeper-sig", b"not-a-signature")]),
        (key, value + b" ", signed_headers(open_keys(config.topic_keys_file), TopicRole.ALERTS, key, value)),  # tampered
    ]
    sink = RecordingSink()
    async with running(config, system, sink=sink) as app:
        await produce_with_headers(broker.bootstrap, config.topics.alerts, hostile)
        # then a real incident, through the agent's own pipeline: it must page and act
        service = unique_name("api")
        await produce_with_headers(
            broker.bootstrap, config.topics.inference, [(service.encode(), inference(service, 900.0, T0 + i), []) for i in range(6)]
        )
        (decision,) = await wait_decisions(app, 1, "the genuine incident's decision")
        await eventually(lambda: any(a.labels.get("service") == service for a in sink.all), timeout_s=30, what="the genuine page")
        topic = config.topics.alerts

        def forged_seen() -> bool:
            return any(a.labels.get("service") == "forged" for a in sink.all) or any(r.labels.get("service") == "forged" for r in decisions(app))

        # each reader of the alerts topic (the notifier and the remediation) counts what it refused
        def counted() -> bool:
            return rejected(app.metrics, topic, "bad_signature") == 2 * 2 and rejected(app.metrics, topic, "unsigned") == 2

        await eventually(
            lambda: counted() or forged_seen(),
            timeout_s=30,
            what="every forged alert counted by both readers",
            detail=lambda: str({r: rejected(app.metrics, topic, r) for r in ("unsigned", "malformed", "unknown_key", "bad_signature")}),
        )
        paged = {a.labels.get("service") for a in sink.all}
        decided = [r.labels.get("service") for r in decisions(app)]
        assert paged == {service}, "a forged alert reached the pager"
        assert decided == [service], "a forged alert was acted on"
        assert rejected(app.metrics, topic, "unknown_key") == 2 * 1
        assert rejected(app.metrics, topic, "malformed") == 2 * 1
    assert decision.outcome == "executed"
    assert system.applies == [(decision.decision_key, f"deployment/{service}")]


async def test_a_forged_alert_never_reaches_alertmanager_while_genuine_pages_do(
    broker: EmbeddedBroker,
    alertmanager: Alertmanager,
    slack_recorder: SlackRecorder,
    unique_topic: Callable[[str], str],
    tmp_path: Path,
) -> None:
    alertname, forged_name = unique_name("WkRealPage"), unique_name("WkForgedPage")
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(alertname, threshold=500, window_s=10, min_count=3))
    config = agent_config(broker.bootstrap, unique_topic, rules)
    forged = firing(forged_name, "checkout")
    value, key = json.dumps(forged.to_dict()).encode(), forged.fingerprint.encode()
    metrics = SelfMetrics()
    async with (
        AlertmanagerClient([alertmanager.url], metrics=metrics) as client,
        running_agent(config, client, metrics=metrics),
    ):
        await produce_with_headers(
            broker.bootstrap, config.topics.alerts, [(key, value, []), (key, value, signed_headers(ROGUE, TopicRole.ALERTS, key, value))]
        )
        service = unique_name("checkout")
        await produce_with_headers(
            broker.bootstrap, config.topics.inference, [(service.encode(), inference(service, 900.0, T0 + i), []) for i in range(6)]
        )
        await asyncio.to_thread(slack_recorder.wait_for, slack_about(alertname, "firing"), 30)
        async with httpx.AsyncClient(base_url=alertmanager.url, trust_env=False) as http:

            async def known() -> set[str]:
                return {a["labels"]["alertname"] for a in (await http.get("/api/v2/alerts")).json()}

            async def settled() -> bool:
                topic = config.topics.alerts
                counted = rejected(metrics, topic, "unsigned") == 2 and rejected(metrics, topic, "unknown_key") == 2
                return counted or forged_name in await known()

            await _eventually_async(settled, 30, "both forged records refused by the notifier and the remediation reader")
            names = await known()
    assert forged_name not in names, "the forged alert reached Alertmanager"
    assert alertname in names
    assert not any(forged_name in json.dumps(m) for m in list(slack_recorder.messages))


async def test_a_forged_approval_does_not_release_a_pending_action(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkForgedOk", "[{type: recording, mode: approve}]")
    keys = open_keys(config.topic_keys_file)
    alert = firing(alertname, "api")
    value = json.dumps(alert.to_dict()).encode()
    async with running(config, system) as app:
        await produce_with_headers(
            broker.bootstrap, config.topics.alerts, [(alert.fingerprint.encode(), value, signed_headers(keys, TopicRole.ALERTS, alert.fingerprint.encode(), value))]
        )
        (request,) = await wait_decisions(app, 1, "the approval request")
        assert request.outcome == "pending-approval"
        approval = answer_request(request, by="mallory", approve=True, ts=time.time(), reason="trust me")
        ok_value, ok_key = approval.to_json(), approval.target.encode()
        await produce_with_headers(
            broker.bootstrap,
            config.topics.audit,
            [
                (ok_key, ok_value, []),
                (ok_key, ok_value, signed_headers(ROGUE, TopicRole.AUDIT, ok_key, ok_value)),
                (ok_key, ok_value, signed_headers(keys, TopicRole.ALERTS, ok_key, ok_value)),  # an alerts signature replayed
            ],
        )
        topic = config.topics.audit
        tail = app.remediation.tail
        await eventually(
            lambda: tail.records + tail.undecodable + getattr(tail, "rejected", 0) >= 1 + 3,
            timeout_s=30,
            what="the audit tail reading the three forged approvals",
        )
        await app.remediation.remediator.sweep()
        assert [r.outcome for r in decisions(app)] == ["pending-approval"] and system.applies == []
        assert [p.record.id for p in app.remediation.remediator.ledger.waiting()] == [request.id]
        assert (rejected(app.metrics, topic, "unsigned"), rejected(app.metrics, topic, "unknown_key"), rejected(app.metrics, topic, "bad_signature")) == (1, 1, 1)
        # the approver's CLI signs with the same key file: its answer is obeyed
        genuine = await answer(broker.bootstrap, topic, request.id, by="alice", approve=True, keys=load_keys(config.topic_keys_file))
        records = await wait_decisions(app, 3, "the genuine approval and the execution")
    assert [(r.outcome, r.agent if r.outcome == "approved" else "") for r in records] == [
        ("pending-approval", ""), ("approved", "alice"), ("executed", ""),
    ]
    assert records[1].id == genuine.id
    assert system.applies == [(request.decision_key, "deployment/api")]


async def test_a_forged_checkpoint_is_not_restored(broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path) -> None:
    keys = open_keys(tmp_path / "topic-keys")
    metrics = SelfMetrics()
    topic = unique_topic("state")
    store = CheckpointStore(broker.bootstrap, topic, keys=keys, metrics=metrics, chunk_bytes=64)
    await store.start(create_partitions=2)
    key = state_key("wk", "events", 0)
    try:
        await store.write(key, 10, b'{"genuine": true}')
        # forged: a higher offset (so it would win), inline and chunked, unsigned and mis-signed
        chunks, manifest = encode_checkpoint(key, 99, b'{"forged": true}', slot="b")
        big_chunks, big_manifest = encode_checkpoint(key, 98, b'{"forged": "%s"}' % (b"x" * 500), slot="a", chunk_bytes=16)
        state = store.partition_of(key)
        assert not chunks and len(big_chunks) > 1
        forged = [
            (manifest[0].encode(), manifest[1], []),
            (manifest[0].encode(), manifest[1], signed_headers(ROGUE, TopicRole.STATE, manifest[0].encode(), manifest[1])),
            *[(k.encode(), v, []) for k, v in big_chunks],
            (big_manifest[0].encode(), big_manifest[1], []),
        ]
        await _produce_to_partition(broker.bootstrap, topic, state, forged)
        found = await store.read([key])
    finally:
        await store.stop()
    assert found[key].payload == b'{"genuine": true}' and found[key].offset == 10
    assert sample(metrics.registry, "watchkeeper_records_rejected_total", {"topic": topic, "reason": "unsigned"}) == 2 + len(big_chunks)
    assert sample(metrics.registry, "watchkeeper_records_rejected_total", {"topic": topic, "reason": "unknown_key"}) == 1


async def test_a_restarted_agent_restores_its_own_checkpoint_not_a_forged_later_one(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule_file(unique_name("WkForgedState"), threshold=500, window_s=10, min_count=3))
    config = agent_config(broker.bootstrap, unique_topic, rules, state_topic=unique_topic("state"), checkpoint_interval_s=0.5)
    topic = config.topics.inference
    await create_topics(broker.bootstrap, [topic], partitions=1)
    service = unique_name("svc")
    await produce_with_headers(broker.bootstrap, topic, [(service.encode(), inference(service, 900.0, T0 + i), []) for i in range(6)])
    async with running_agent(config, RecordingSink()) as first:
        await eventually(
            lambda: sample(first.metrics.registry, "watchkeeper_checkpoint_offset", {"topic": topic, "partition": "0"}) == 6,
            timeout_s=30,
            what="a checkpoint at offset 6",
        )
    key = state_key(config.kafka.group_id, topic, 0)
    on_state = await consume(broker.bootstrap, config.state_topic, timeout_s=10)
    reader = CheckpointReader({key})
    for rec in on_state:
        reader.feed(rec.key, rec.value)
    genuine = reader.result()[key]
    (partition,) = {rec.partition for rec in on_state if rec.key == key.encode()}
    # the same state, claimed at a far later offset: restored, it would skip every record up to there
    chunks, manifest = encode_checkpoint(key, 1_000_000, genuine.payload, slot="b" if genuine.slot == "a" else "a")
    await _produce_to_partition(broker.bootstrap, config.state_topic, partition, [(k.encode(), v, []) for k, v in [*chunks, manifest]])
    metrics = SelfMetrics()
    async with running_agent(config, RecordingSink(), metrics=metrics):
        await eventually(
            lambda: sample(metrics.registry, "watchkeeper_checkpoint_restores_total", {"outcome": "restored"}) >= 1,
            timeout_s=30,
            what="the partition restored",
        )
        restored_at = sample(metrics.registry, "watchkeeper_checkpoint_offset", {"topic": topic, "partition": "0"})
        refused = sample(metrics.registry, "watchkeeper_records_rejected_total", {"topic": config.state_topic, "reason": "unsigned"})
    assert genuine.offset == 6
    assert restored_at == 6, "the forged checkpoint was restored"
    assert refused == 1 + len(chunks)


async def test_rotation_the_new_key_signs_and_the_old_one_still_verifies(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path, recording_kind: None
) -> None:
    old, new = "o" * 40, "n" * 40
    alertname, config, system = scenario(broker, unique_topic, tmp_path, "WkRotate", "[{type: recording, mode: enforce}]")
    alert = firing(alertname, "api")
    value, key = json.dumps(alert.to_dict()).encode(), alert.fingerprint.encode()
    before = replace(config, topic_keys_file=_keys_file(tmp_path / "old.keys", old))
    async with running(before, system) as first:
        await produce_with_headers(broker.bootstrap, config.topics.alerts, [(key, value, signed_headers(load_keys(before.topic_keys_file), TopicRole.ALERTS, key, value))])
        (executed,) = await wait_decisions(first, 1, "the execution under the old key")
    rotating = replace(config, topic_keys_file=_keys_file(tmp_path / "rotating.keys", new, old))
    keys = load_keys(rotating.topic_keys_file)
    assert keys.signing.key_id != load_keys(before.topic_keys_file).signing.key_id
    async with running(rotating, system) as second:
        # the ledger rebuilt from audit records signed with the old key: a re-send is a duplicate
        await produce_with_headers(broker.bootstrap, config.topics.alerts, [(key, value, signed_headers(keys, TopicRole.ALERTS, key, value))])
        await eventually(lambda: metric(second, "watchkeeper_action_duplicates_total") >= 1, timeout_s=30, what="the re-send under the new key")
        assert [r.id for r in decisions(second)] == [executed.id]
        assert metric(second, "watchkeeper_records_rejected_total", topic=config.topics.audit, reason="unknown_key") == 0
    # once the old key is dropped, what it signed is no longer trusted
    after = replace(config, topic_keys_file=_keys_file(tmp_path / "new.keys", new))
    async with running(after, system) as third:
        await eventually(lambda: third.remediation.tail.caught_up.is_set(), timeout_s=30, what="the ledger rebuilt")
        assert decisions(third) == []
        assert metric(third, "watchkeeper_records_rejected_total", topic=config.topics.audit, reason="unknown_key") == 1
    assert system.applies == [(executed.decision_key, "deployment/api")]


async def test_watchkeeper_run_without_a_key_file_creates_one_and_verifies_its_own_checkpoints_after_a_restart(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    rules = incident_rules(tmp_path / "rules.yaml", unique_name("WkDefaultKey"))
    topics = topics_for(unique_topic)
    state = unique_topic("state")
    env = agent_env(
        broker.bootstrap, topics, rules, WATCHKEEPER_STATE_TOPIC=state, WATCHKEEPER_TOPIC_AUDIT=unique_topic("audit"),
        WATCHKEEPER_CHECKPOINT_INTERVAL="1", XDG_STATE_HOME=str(tmp_path / "xdg"),
    )
    del env["WATCHKEEPER_TOPIC_KEYS_FILE"]  # nothing configured: the demo / single-agent default
    key_file = tmp_path / "xdg" / "watchkeeper" / "topic-keys"
    await create_topics(broker.bootstrap, [topics.inference], partitions=4)
    await produce_where(broker.bootstrap, topics.inference, grid([unique_name("svc") for _ in range(4)], time.time() - 300, 0, 10))
    ends = await next_offsets(broker.bootstrap, topics.inference)
    scraper = Scraper(env)
    with agent_process(env, tmp_path / "first.log") as first:

        seen: dict[int, int] = {}

        async def checkpointed() -> bool:
            seen.update(await scraper.checkpointed(topics.inference))
            return all(seen.get(p) == o for p, o in ends.items())

        await _eventually_async(checkpointed, 60, "a checkpoint of every partition", lambda: f"checkpointed {seen}, ends {ends}")
        os.kill(first.pid, signal.SIGTERM)
        first.wait(timeout=30)
    secret = key_file.read_text()
    assert key_file.stat().st_mode & 0o777 == 0o600
    first_log = (tmp_path / "first.log").read_text()
    assert "topic key file was not configured" in first_log and str(key_file) in first_log
    assert all(line.strip() not in first_log for line in secret.splitlines() if not line.startswith("#"))
    env["WATCHKEEPER_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
    scraper = Scraper(env)
    with agent_process(env, tmp_path / "second.log") as second:

        async def restored() -> bool:
            return await scraper.value("watchkeeper_checkpoint_restores_total", outcome="restored") >= len(seen)  # event topics of all sources

        await _eventually_async(restored, 60, "every partition restored after the restart", lambda: _tail(tmp_path / "second.log"))
        rejected_state = sum(v for (name, labels), v in (await scraper.samples()).items() if name == "watchkeeper_records_rejected_total")
        fresh = await scraper.value("watchkeeper_checkpoint_restores_total", outcome="fresh")
        assert second.poll() is None
    assert fresh == 0, "a partition of the restarted agent started fresh: its own checkpoint was not trusted"
    assert rejected_state == 0
    assert key_file.read_text() == secret  # reused, not replaced


async def _produce_to_partition(bootstrap: str, topic: str, partition: int, records: list) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition, headers=list(headers))
    finally:
        await producer.stop()
