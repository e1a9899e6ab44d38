"""The emitter against the real Tansu broker: keys, bounded buffer, flush, unreachable broker."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import defaultdict

import pytest
from prometheus_client import CollectorRegistry

from agent.model import EVENT_ADAPTER
from tests.kafka_tools import consume
from watchkeeper_emit import Emitter, gpu_event, inference_event

pytestmark = pytest.mark.integration


def _topics(unique_topic) -> dict[str, str]:
    return {kind: unique_topic(kind) for kind in ("inference", "llm", "gpu")}


def _event(service: str, i: int) -> dict:
    return inference_event(service, "m", "1", latency_ms=float(i), status="ok", ts=1_764_000_000 + i)


async def test_events_arrive_keyed_by_owner_in_order(broker, unique_topic):
    topics = _topics(unique_topic)
    async with Emitter(broker.bootstrap, topics=topics, register_metrics=False, linger_ms=5) as emitter:
        for i in range(300):
            assert emitter.emit(_event(f"svc-{i % 3}", i))
        emitter.emit(gpu_event("node-a", 0, util_pct=50, mem_used_bytes=1, mem_total_bytes=2, temp_c=40, power_w=100, ts=1.0))
        assert await emitter.flush(15)
    assert (emitter.sent, emitter.errors, emitter.dropped) == (301, 0, 0)

    records = await consume(broker.bootstrap, topics["inference"], n=300, timeout_s=15)
    assert len(records) == 300
    partitions: dict[bytes, set[int]] = defaultdict(set)
    latencies: dict[bytes, list[float]] = defaultdict(list)
    for record in records:
        event = EVENT_ADAPTER.validate_json(record.value)
        assert record.key == event.service.encode()
        partitions[record.key].add(record.partition)
        latencies[record.key].append(event.latency_ms)
    assert set(partitions) == {b"svc-0", b"svc-1", b"svc-2"}
    assert all(len(p) == 1 for p in partitions.values()), partitions  # one owner, one partition
    for values in latencies.values():  # the per-owner order is the emit order
        assert values == sorted(values)
    gpu = await consume(broker.bootstrap, topics["gpu"], n=1, timeout_s=10)
    assert [r.key for r in gpu] == [b"node-a"]


async def test_full_buffer_drops_and_counts_without_blocking(broker, unique_topic):
    topics = _topics(unique_topic)
    registry = CollectorRegistry()
    emitter = await Emitter(
        broker.bootstrap, topics=topics, max_buffer=100, metrics_registry=registry, client_id="full-buffer"
    ).start()
    started = time.perf_counter()
    accepted = [emitter.emit(_event("svc", i)) for i in range(1000)]  # no await: the drain task cannot run
    elapsed = time.perf_counter() - started
    assert accepted.count(True) == 100 and accepted.count(False) == 900
    assert emitter.dropped_by_reason["buffer_full"] == 900
    assert elapsed < 1.0, f"1000 emits took {elapsed:.3f}s: emit must not wait for the broker"
    labels = {"client_id": "full-buffer", "reason": "buffer_full"}
    assert registry.get_sample_value("watchkeeper_emit_dropped_total", labels) == 900
    await emitter.close(timeout_s=15)
    assert emitter.sent == 100
    assert registry.get_sample_value("watchkeeper_emit_sent_total", {"client_id": "full-buffer"}) == 100
    records = await consume(broker.bootstrap, topics["inference"], n=100, timeout_s=15)
    assert sorted(json.loads(r.value)["latency_ms"] for r in records) == [float(i) for i in range(100)]


async def test_close_flushes_everything_buffered(broker, unique_topic):
    topics = _topics(unique_topic)
    emitter = await Emitter(broker.bootstrap, topics=topics, register_metrics=False, linger_ms=10_000).start()
    for i in range(2000):
        emitter.emit(_event(f"svc-{i % 7}", i))
    assert emitter.buffered > 0  # the long linger holds them: only close() sends them
    await emitter.close(timeout_s=20)
    assert (emitter.sent, emitter.errors, emitter.dropped, emitter.buffered) == (2000, 0, 0, 0)
    assert not emitter.emit(_event("svc", 1)) and emitter.dropped_by_reason["closed"] == 1
    records = await consume(broker.bootstrap, topics["inference"], n=2000, timeout_s=20)
    assert len(records) == 2000


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


async def test_unreachable_broker_neither_blocks_nor_crashes():
    registry = CollectorRegistry()
    emitter = Emitter(f"127.0.0.1:{_dead_port()}", max_buffer=50, metrics_registry=registry, client_id="dead")
    started = time.perf_counter()
    await emitter.start()
    accepted = [emitter.emit(_event("svc", i)) for i in range(200)]
    await asyncio.sleep(0.3)  # the service's loop keeps running while the emitter retries
    assert time.perf_counter() - started < 2.0
    assert accepted.count(True) == 50 and emitter.dropped_by_reason["buffer_full"] == 150
    assert not emitter.connected
    closing = time.perf_counter()
    await emitter.close(timeout_s=1.0)
    assert time.perf_counter() - closing < 5.0
    assert emitter.dropped_by_reason["shutdown"] == 50 and emitter.sent == 0
    assert registry.get_sample_value("watchkeeper_emit_dropped_total", {"client_id": "dead", "reason": "shutdown"}) == 50


async def test_broker_arriving_late_still_gets_the_buffered_events(broker, unique_topic):
    """Started before Kafka is reachable (a pod racing its broker): delivers once it connects."""
    topics = _topics(unique_topic)
    calls = 0

    def flaky_factory(**kwargs):
        nonlocal calls
        calls += 1
        from aiokafka import AIOKafkaProducer

        if calls == 1:  # the first attempt goes nowhere, as if the broker were not up yet
            kwargs["bootstrap_servers"] = f"127.0.0.1:{_dead_port()}"
        return AIOKafkaProducer(**kwargs)

    emitter = await Emitter(broker.bootstrap, topics=topics, register_metrics=False, producer_factory=flaky_factory).start()
    for i in range(10):
        emitter.emit(_event("late", i))
    await emitter.close(timeout_s=20)
    assert calls >= 2 and emitter.sent == 10


def test_a_synchronous_service_emits_through_a_background_emitter(broker, unique_topic):
    """No event loop in the caller (Flask, Django, a batch job): the emitter brings its own thread."""
    import threading

    from watchkeeper_emit import BackgroundEmitter

    topics = _topics(unique_topic)
    emitter = BackgroundEmitter(Emitter(broker.bootstrap, topics=topics, register_metrics=False), close_at_exit=False)
    with emitter:
        workers = [threading.Thread(target=lambda n=n: [emitter.emit(_event(f"sync-{n}", i)) for i in range(50)])
                   for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert emitter.flush(15)
        assert emitter.sent == 200
    assert not emitter._thread.is_alive()
    records = asyncio.run(consume(broker.bootstrap, topics["inference"], n=200, timeout_s=15))
    assert {r.key for r in records} == {b"sync-0", b"sync-1", b"sync-2", b"sync-3"} and len(records) == 200


async def test_broker_dying_mid_flight_never_blocks_and_every_event_is_accounted_for(tmp_path):
    """A private broker is killed while events flow, then restarted (empty, as Tansu restarts)."""
    from agent.runtime.embedded_broker import EmbeddedBroker

    topics = {"inference": "wk.inference", "llm": "wk.llm", "gpu": "wk.gpu"}
    with EmbeddedBroker(log_dir=tmp_path) as private:
        emitter = await Emitter(private.bootstrap, topics=topics, register_metrics=False, max_buffer=500,
                                request_timeout_ms=3000, retry_backoff_ms=100).start()
        for i in range(20):
            emitter.emit(_event("svc", i))
        assert await emitter.flush(15) and emitter.sent == 20

        private.kill()
        loop = asyncio.get_running_loop()
        worst_emit = worst_tick = 0.0
        emitted = 20
        for i in range(300):  # the service keeps serving: ~3 s of traffic while Kafka is gone
            started = time.perf_counter()
            emitter.emit(_event("svc", 100 + i))
            worst_emit = max(worst_emit, time.perf_counter() - started)
            emitted += 1
            before = loop.time()
            await asyncio.sleep(0.01)
            worst_tick = max(worst_tick, loop.time() - before - 0.01)
        assert worst_emit < 0.05, f"an emit took {worst_emit * 1000:.1f} ms"
        assert worst_tick < 1.0, f"the service's loop stalled {worst_tick:.2f} s"

        private.start()  # back, same port, no data and no topics (Tansu's memory storage)
        # New traffic goes to a topic the producer has no cached metadata for: Tansu, unlike
        # Kafka, acknowledges writes to a topic it lost in the restart, so the old one proves nothing.
        for i in range(20):
            emitter.emit(gpu_event("node-after", i, util_pct=50, mem_used_bytes=1, mem_total_bytes=2,
                                   temp_c=40, power_w=100, ts=1_764_000_000 + i))
            emitted += 1
        await emitter.close(timeout_s=20)
        accounted = emitter.sent + emitter.errors + emitter.dropped
        assert accounted == emitted, (emitter.sent, emitter.errors, emitter.dropped_by_reason)
        after_restart = await _read_until(private.bootstrap, topics["gpu"], lambda e: e["node"] == "node-after", 20)
        assert sorted(int(e["gpu"]) for e in after_restart) == list(range(20))  # the emitter recovered by itself


async def _read_until(bootstrap: str, topic: str, wanted, n: int, timeout_s: float = 15.0) -> list[dict]:
    """Read ``topic`` from the start until ``n`` events match ``wanted`` (Tansu's high-water
    mark can trail the last batch, so "caught up" is not a stopping rule here)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < n and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(e for e in (json.loads(r.value) for r in batch) if wanted(e))
    finally:
        await consumer.stop()
    return found


async def test_rag_events_reach_their_topics_keyed_by_service(broker, unique_topic):
    """Retrieval, llm (with the response fields) and feedback events of one request, through the real broker."""
    from watchkeeper_emit import LlmTracker, RagRecorder

    topics = {kind: unique_topic(kind) for kind in ("inference", "llm", "gpu", "retrieval", "feedback")}
    async with Emitter(broker.bootstrap, topics=topics, register_metrics=False, linger_ms=5) as emitter:
        rag = RagRecorder(emitter, service="support-bot")
        llm = LlmTracker(emitter, service="support-bot")
        for i in range(20):
            rid = f"req-{i}"
            found = [("doc", 0.9), ("doc2", 0.4)][: i % 3]
            rag.search(lambda q, k, found=found: found, [0.6, 0.8] * 192, k=4,
                       index="docs", index_version=2, request_id=rid)
            llm.record({"model": "m", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}, tenant="acme",
                       prompt_version=7, latency_ms=20.0, request_id=rid, flagged=i == 3, refusal=i % 3 == 0,
                       eval_score=0.9, embedding=[0.1] * 384)
            rag.feedback(rid, prompt_version=7, score=1 if i % 2 else -1)
        assert await emitter.flush(15)
    assert (emitter.sent, emitter.errors, emitter.dropped) == (60, 0, 0)
    got = {}
    for kind in ("retrieval", "llm", "feedback"):
        records = await consume(broker.bootstrap, topics[kind], n=20, timeout_s=15)
        assert {r.key for r in records} == {b"support-bot"}
        got[kind] = {e.request_id: e for e in (EVENT_ADAPTER.validate_json(r.value) for r in records)}
    assert set(got["retrieval"]) == set(got["llm"]) == set(got["feedback"]) == {f"req-{i}" for i in range(20)}
    assert [got["retrieval"][f"req-{i}"].hits for i in range(3)] == [0, 1, 2]
    assert got["retrieval"]["req-0"].top_score is None and len(got["retrieval"]["req-1"].embedding) == 384
    assert got["llm"]["req-3"].safety.flagged and not got["llm"]["req-4"].safety.flagged
    assert got["feedback"]["req-1"].score == 1.0 and got["feedback"]["req-2"].prompt_version == "7"
