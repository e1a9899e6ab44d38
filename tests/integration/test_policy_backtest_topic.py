"""The policy backtest on a recorded topic range of the real broker (Tansu), read without a group.

The history of ``tests/unit/policy/policy_data.py`` is produced with Kafka timestamps
equal to event time, framed by records before and after the range that must not be
read; the backtest is run twice and its Markdown and PNG compared byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from typer.testing import CliRunner

from agent.cli import app
from agent.policy_backtest import PolicyBacktest, PolicySettings, run_policy_backtest
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.runtime.topics import create_topics
from tests.unit.policy.policy_data import DURATION_S, T0, events, write_inputs

pytestmark = pytest.mark.integration


async def _record(bootstrap: str, topic: str) -> None:
    """The history (timestamped by event time) plus noise before and after the range, on 4 partitions."""
    await create_topics(bootstrap, [topic], partitions=4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        noise = {"type": "inference", "service": "checkout", "model": "ranker", "model_version": "7", "latency_ms": 5000.0, "status": "ok"}
        outside = [T0 - 3600 + i for i in range(120)] + [T0 + DURATION_S + 60 + i for i in range(120)]
        sends = [
            await producer.send(topic, json.dumps({**noise, "ts": ts}).encode(), key=b"checkout", timestamp_ms=int(ts * 1000))
            for ts in outside[:120]
        ]
        for event in events():
            ts = float(event["ts"])  # type: ignore[arg-type]
            key = str(event["service"]).encode()
            sends.append(await producer.send(topic, json.dumps(event).encode(), key=key, timestamp_ms=int(ts * 1000)))
        sends += [
            await producer.send(topic, json.dumps({**noise, "ts": ts}).encode(), key=b"search", timestamp_ms=int(ts * 1000))
            for ts in outside[120:]
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def _groups(bootstrap: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(g[0] for g in await admin.list_consumer_groups())
    finally:
        await admin.close()


def test_topic_range_backtest_is_reproducible_byte_for_byte(
    broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique_topic("recorded")
    asyncio.run(_record(broker.bootstrap, topic))
    groups_before = asyncio.run(_groups(broker.bootstrap))
    policy, _, labels = write_inputs(tmp_path / "in")

    def job(out: str) -> PolicyBacktest:
        return PolicyBacktest(
            policy=(str(policy),), out=tmp_path / out, topic=topic, bootstrap=broker.bootstrap,
            start=str(T0), end=str(T0 + DURATION_S), labels=labels,
            settings=PolicySettings(namespaces=frozenset({"ml-serving"})),
        )

    run1, md1, png1 = run_policy_backtest(job("one"))
    run2, md2, png2 = run_policy_backtest(job("two"))
    # exactly the range: every event of the history, none of the 5000 ms noise around it
    assert run1.events == len(events())
    assert md1.read_bytes() == md2.read_bytes()
    assert png1.read_bytes() == png2.read_bytes()
    text = md1.read_text(encoding="utf-8")
    assert f"topic {topic} ({len(events())} records)" in text
    for row in ("| cooldown | 1 |", "| blast-radius | 1 |", "| namespace | 4 |", "| 2 | 1 | 0.50 | 2 | 1 | 0.50 |"):
        assert row in text
    # and the same decisions as the JSONL replay of the same history
    jsonl = run_policy_backtest(
        PolicyBacktest(policy=(str(policy),), out=tmp_path / "file", events=tmp_path / "in" / "events.jsonl",
                       labels=labels, settings=PolicySettings(namespaces=frozenset({"ml-serving"})))
    )[0]
    assert [(r.ts, r.target, r.outcome, r.guard) for r in run1.records] == [(r.ts, r.target, r.outcome, r.guard) for r in jsonl.records]
    # the command line reads the same range and writes the same bytes
    cli = CliRunner().invoke(app, [
        "backtest", "--policy", str(policy), "--topic", topic, "--bootstrap", broker.bootstrap, "--from", str(T0),
        "--to", str(T0 + DURATION_S), "--labels", str(labels), "--namespaces", "ml-serving", "--report-dir", str(tmp_path / "cli"),
    ])
    assert cli.exit_code == 0, cli.output
    assert (tmp_path / "cli" / "report.md").read_bytes() == md1.read_bytes()
    assert (tmp_path / "cli" / "timeline.png").read_bytes() == png1.read_bytes()
    # no consumer group was joined (nor left behind) by the reads
    assert asyncio.run(_groups(broker.bootstrap)) == groups_before

