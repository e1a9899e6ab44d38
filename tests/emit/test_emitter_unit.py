"""Emitter bookkeeping with an in-memory producer (fast; the real broker is in test_emitter_kafka)."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import threading

import pytest
from prometheus_client import CollectorRegistry

from watchkeeper_emit import Emitter, inference_event
from watchkeeper_emit.config import kafka_kwargs_from_env, topics_from_env


class MemoryProducer:
    def __init__(self, fail: bool = False, **kwargs):
        self.kwargs = kwargs
        self.records: list[tuple[str, bytes, bytes]] = []
        self.fail = fail
        self.stopped = False

    async def start(self):
        pass

    async def send(self, topic, value, key, timestamp_ms=None):
        future = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(RuntimeError("not acknowledged"))
        else:
            self.records.append((topic, key, value))
            future.set_result(None)
        return future

    async def stop(self):
        self.stopped = True


def _emitter(producers, fail=False, **kwargs):
    def factory(**kw):
        producers.append(MemoryProducer(fail=fail, **kw))
        return producers[-1]

    return Emitter("memory:9092", producer_factory=factory, register_metrics=False, **kwargs)


def _event(i=0, service="svc"):
    return inference_event(service, "m", "1", latency_ms=1.0, ts=float(i))


async def test_invalid_and_oversized_events_are_dropped_with_their_reason():
    producers: list[MemoryProducer] = []
    emitter = await _emitter(producers, max_event_bytes=400).start()
    emitter.emit({"type": "metric", "service": "x"})  # unknown type
    emitter.emit({"type": "inference", "ts": 1})  # no owner
    emitter.emit({**_event(), "latency_ms": float("nan")})  # not JSON-encodable as the contract wants
    emitter.emit({**_event(), "features": {f"f{i}": "x" * 20 for i in range(50)}})
    emitter.emit(_event())
    await emitter.close()
    assert emitter.dropped_by_reason["invalid"] == 3 and emitter.dropped_by_reason["too_large"] == 1
    assert emitter.sent == 1 and producers[0].stopped
    assert producers[0].kwargs["client_id"] == "watchkeeper-emit" and producers[0].kwargs["acks"] == 1


async def test_unacknowledged_events_count_as_errors():
    producers: list[MemoryProducer] = []
    emitter = await _emitter(producers, fail=True).start()
    for i in range(5):
        emitter.emit(_event(i))
    await emitter.close()
    assert (emitter.errors, emitter.sent) == (5, 0)


async def test_emit_from_other_threads_is_delivered():
    producers: list[MemoryProducer] = []
    emitter = await _emitter(producers, batch_records=10).start()

    def worker(n):
        for i in range(200):
            emitter.emit(_event(i, service=f"t{n}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        await asyncio.to_thread(t.join)
    await emitter.close()
    assert emitter.sent == 800 and len(producers[0].records) == 800


async def test_two_emitters_export_side_by_side():
    registry = CollectorRegistry()
    a = Emitter("x:1", client_id="a", metrics_registry=registry, max_buffer=1)
    b = Emitter("x:1", client_id="b", metrics_registry=registry, max_buffer=1)
    for emitter in (a, b, b):
        emitter.emit(_event())
        emitter.emit(_event())
    assert registry.get_sample_value("watchkeeper_emit_dropped_total", {"client_id": "a", "reason": "buffer_full"}) == 1
    assert registry.get_sample_value("watchkeeper_emit_dropped_total", {"client_id": "b", "reason": "buffer_full"}) == 3
    assert registry.get_sample_value("watchkeeper_emit_buffered", {"client_id": "b"}) == 1
    await a.close()
    assert a.dropped_by_reason["shutdown"] == 1  # never started: the buffer is accounted for


def test_settings_from_environment(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    env = {
        "WATCHKEEPER_KAFKA_BOOTSTRAP": "k:9092",
        "WATCHKEEPER_TOPIC_LLM": "team.llm",
        "WATCHKEEPER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "WATCHKEEPER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "WATCHKEEPER_KAFKA_SASL_USERNAME": "svc",
        "WATCHKEEPER_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "WATCHKEEPER_EMIT_MAX_BUFFER": "123",
    }
    assert topics_from_env(env)["llm"] == "team.llm"
    kwargs = kafka_kwargs_from_env(env)
    assert kwargs["sasl_plain_password"] == "s3cret" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    emitter = Emitter.from_env(env, register_metrics=False)
    assert (emitter.bootstrap, emitter.max_buffer, emitter.topics["llm"]) == ("k:9092", 123, "team.llm")
    with pytest.raises(ValueError, match="SECURITY_PROTOCOL"):
        kafka_kwargs_from_env({"WATCHKEEPER_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ValueError, match="bootstrap"):
        Emitter.from_env({}, register_metrics=False)


@pytest.mark.parametrize("module", ["events", "llm", "cli", "rag"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"watchkeeper_emit.{module}"))
    assert result.attempted > 0 and result.failed == 0


async def test_events_the_producer_never_settles_are_counted_at_close():
    class Stuck(MemoryProducer):
        async def send(self, topic, value, key, timestamp_ms=None):
            return asyncio.get_running_loop().create_future()  # never acknowledged, never failed

        async def stop(self):
            await asyncio.sleep(3600)  # a producer that hangs on shutdown

    emitter = await Emitter("memory:9092", producer_factory=lambda **kw: Stuck(), register_metrics=False).start()
    for i in range(7):
        emitter.emit(_event(i))
    await emitter.close(timeout_s=0.3)
    assert (emitter.sent, emitter.errors, emitter.dropped) == (0, 7, 0)
