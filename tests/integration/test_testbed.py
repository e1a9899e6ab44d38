"""The real-server fixtures work: Tansu stores and returns keyed messages, and
Alertmanager turns a posted alert into a Slack message and then a resolved one."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.runtime.embedded_broker import EmbeddedBroker, create_topics
from tests.kafka_tools import consume, produce
from tests.testbed import Alertmanager, SlackRecorder

pytestmark = pytest.mark.integration

UniqueTopic = Callable[[str], str]


async def test_broker_round_trip_keeps_keys_on_one_partition(
    broker: EmbeddedBroker, unique_topic: UniqueTopic
) -> None:
    topic = unique_topic("roundtrip")
    await create_topics(broker.bootstrap, [topic], partitions=4)
    await create_topics(broker.bootstrap, [topic], partitions=4)  # "already exists" is fine
    sent = [(f"key-{i % 10}", f"value-{i}".encode()) for i in range(100)]

    await produce(broker.bootstrap, topic, sent)
    records = await consume(broker.bootstrap, topic, n=100)

    assert sorted(r.value for r in records) == sorted(value for _, value in sent)
    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        partitions_by_key[record.key].add(record.partition)
    assert all(len(parts) == 1 for parts in partitions_by_key.values()), partitions_by_key
    assert len({r.partition for r in records}) > 1, "10 keys should spread over 4 partitions"
    # Per key, order is kept.
    for key in partitions_by_key:
        values = [r.value for r in records if r.key == key]
        assert values == [v for k, v in sent if k.encode() == key]


async def test_consume_without_n_stops_at_the_high_watermark(
    broker: EmbeddedBroker, unique_topic: UniqueTopic
) -> None:
    topic = unique_topic("caughtup")
    await create_topics(broker.bootstrap, [topic], partitions=4)
    await produce(broker.bootstrap, topic, [(None, b"one"), ("k", b"two")])

    records = await consume(broker.bootstrap, topic, timeout_s=10.0)

    assert sorted(r.value for r in records) == [b"one", b"two"]


async def test_broker_restart_keeps_the_port_and_loses_the_data(
    tmp_path: Path, unique_topic: UniqueTopic
) -> None:
    topic = unique_topic("restart")
    with EmbeddedBroker(log_dir=tmp_path) as own:  # not the session broker: others use it
        bootstrap, pid = own.bootstrap, own.pid
        await produce(bootstrap, topic, [(None, b"before")])

        own.kill()
        assert own.pid is None
        own.start()

        assert own.bootstrap == bootstrap and own.pid != pid
        assert await consume(bootstrap, topic, timeout_s=5.0) == []  # memory storage (TESTBED.md)
        await produce(bootstrap, topic, [(None, b"after")])
        assert [r.value for r in await consume(bootstrap, topic, n=1)] == [b"after"]
    assert own.pid is None and "tansu broker" in (tmp_path / "tansu.log").read_text()


def _alert(alertname: str, *, ends_at: datetime | None = None) -> dict[str, object]:
    now = datetime.now(UTC)
    alert: dict[str, object] = {
        "labels": {"alertname": alertname, "severity": "page", "service": "checkout"},
        "annotations": {"summary": "p99 latency above SLO", "runbook_url": "https://rb/latency"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
        "generatorURL": "http://watchkeeper.local/rules/latency",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat()
    return alert


def _about(alertname: str, status: str) -> Callable[[dict[str, Any]], bool]:
    def match(message: dict[str, Any]) -> bool:
        return any(
            alertname in a.get("title", "") and status in a.get("text", "")
            for a in message.get("attachments", [])
        )

    return match


async def test_alertmanager_pages_slack_then_resolves(
    alertmanager: Alertmanager, slack_recorder: SlackRecorder
) -> None:
    alertname = f"TestbedProbe_{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=alertmanager.url, trust_env=False, timeout=5) as client:
        response = await client.post("/api/v2/alerts", json=[_alert(alertname)])
        assert response.status_code == 200, response.text

        firing = slack_recorder.wait_for(_about(alertname, "status: firing"), timeout_s=10)

        ended = datetime.now(UTC) - timedelta(seconds=1)
        response = await client.post("/api/v2/alerts", json=[_alert(alertname, ends_at=ended)])
        assert response.status_code == 200, response.text

        resolved = slack_recorder.wait_for(_about(alertname, "status: resolved"), timeout_s=10)

    assert firing["channel"] == "#pages"
    attachment = firing["attachments"][0]
    assert attachment["title"] == f"[FIRING] {alertname}"
    assert "service=checkout" in attachment["text"]
    assert "summary=p99 latency above SLO" in attachment["text"]
    assert resolved["attachments"][0]["title"] == f"[RESOLVED] {alertname}"
