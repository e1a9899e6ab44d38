"""No record can stall a partition: bounded wire numbers, ``internal`` dead letters, total alert encoding.

Each test here failed on the code before issue 12: a GPU event with ``mem_used_bytes``
of 10**400 raised ``OverflowError`` out of ``BatchProcessor.process`` (the batch was
NACKed and redelivered for ever), and an alert whose evidence held a set could not be
published at all.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.config import AgentConfig, KafkaConfig
from agent.model import MAX_NUMBER, Alert, AlertState, GpuEvent, LlmEvent
from agent.rules import load_rules
from agent.runtime.app import AgentApp
from agent.runtime.ingest import BatchProcessor, encode_alert, publish_alerts
from agent.runtime.signing import RecordAuth, TopicRole
from agent.runtime.topic_keys import TopicKey, TopicKeys
from agent.runtime.notifier import TerminalSink
from agent.runtime.pipeline import Pipeline
from agent.runtime.selfmetrics import SelfMetrics

REPO = Path(__file__).resolve().parents[3]
NOW = 1_700_000_000.0
HUGE = 10**400


@dataclass
class Rec:
    value: bytes | None
    topic: str = "watchkeeper.gpu"
    offset: int = 0
    partition: int = 0
    key: bytes | None = b"k"
    timestamp: int = int(NOW * 1000)


def gpu(**over: Any) -> dict[str, Any]:
    event = {"type": "gpu", "ts": NOW, "node": "n1", "gpu": 0, "util_pct": 50.0, "mem_used_bytes": 10**9,
             "mem_total_bytes": 8 * 10**10, "temp_c": 60.0, "power_w": 200.0, "xid_errors": 0}
    return {**event, **over}


def llm(**over: Any) -> dict[str, Any]:
    event = {"type": "llm", "ts": NOW, "service": "chat", "model": "m", "prompt_version": "1", "tenant": "t",
             "prompt_tokens": 10, "completion_tokens": 10, "latency_ms": 100.0, "status": "ok"}
    return {**event, **over}


def inference(**over: Any) -> dict[str, Any]:
    event = {"type": "inference", "ts": NOW, "service": "svc", "model": "m", "model_version": "1",
             "latency_ms": 10.0, "status": "ok"}
    return {**event, **over}


TOPICS = {"gpu": "watchkeeper.gpu", "llm": "watchkeeper.llm", "inference": "watchkeeper.inference"}


def shipped_processor(clock: float = NOW) -> tuple[BatchProcessor, SelfMetrics, Pipeline]:
    """The real BatchProcessor with the shipped rules (rules/*.yaml)."""
    metrics = SelfMetrics()
    pipeline = Pipeline(load_rules((str(REPO / "rules"),)))
    proc = BatchProcessor(
        pipeline=_Fixed(pipeline), metrics=metrics, clock=_Fixed(clock), topic_sources={v: k for k, v in TOPICS.items()}
    )
    return proc, metrics, pipeline


@dataclass
class _Fixed:
    """A callable returning one value (the processor's pipeline and clock)."""

    value: Any

    def __call__(self) -> Any:
        return self.value


def record(event: dict[str, Any], offset: int = 0) -> Rec:
    return Rec(json.dumps(event).encode(), topic=TOPICS[event["type"]], offset=offset)


HUGE_EVENTS = [
    pytest.param(gpu(mem_used_bytes=HUGE, mem_total_bytes=HUGE), id="gpu-mem-bytes"),
    pytest.param(gpu(xid_errors=HUGE), id="gpu-xid"),
    pytest.param(gpu(mem_total_bytes=MAX_NUMBER + 1), id="gpu-mem-2**53+1"),
    pytest.param(gpu(ts=HUGE), id="gpu-ts-int"),
    pytest.param(llm(prompt_tokens=HUGE), id="llm-prompt-tokens"),
    pytest.param(llm(completion_tokens=HUGE, prompt_tokens=HUGE), id="llm-both-tokens"),
    pytest.param(llm(prompt_tokens=2**63), id="llm-2**63"),
    pytest.param(llm(cost_usd=1e300), id="llm-cost-1e300"),
    pytest.param(inference(features={"amount": HUGE}), id="inference-feature"),
    pytest.param(inference(prediction=HUGE), id="inference-prediction"),
    pytest.param(inference(prediction=-1e300), id="inference-prediction-1e300"),
    pytest.param(inference(latency_ms=HUGE), id="inference-latency"),
]


@pytest.mark.parametrize("hostile", HUGE_EVENTS)
def test_numbers_beyond_the_contract_are_dead_lettered_never_raised(hostile: dict[str, Any]) -> None:
    proc, metrics, _ = shipped_processor()
    good = {"gpu": gpu, "llm": llm, "inference": inference}[hostile["type"]](ts=NOW + 1)
    out = proc.process([record(hostile, 0), record(good, 1)])
    [dl] = out.dead_letters
    assert dl.kind == "invalid" and dl.offset == 0, dl.reason
    assert out.processed == 1
    source = hostile["type"]
    assert metrics.registry.get_sample_value("watchkeeper_events_total", {"source": source, "outcome": "dead_letter"}) == 1


def test_the_bounds_are_in_the_published_schema() -> None:
    llm_schema = LlmEvent.model_json_schema()["properties"]
    gpu_schema = GpuEvent.model_json_schema()["properties"]
    assert llm_schema["prompt_tokens"]["maximum"] == MAX_NUMBER == 2**53
    assert gpu_schema["mem_total_bytes"]["maximum"] == MAX_NUMBER
    assert gpu_schema["xid_errors"]["anyOf"][0]["maximum"] == MAX_NUMBER
    # the largest integer allowed converts to float exactly
    assert float(MAX_NUMBER) == MAX_NUMBER and int(float(MAX_NUMBER)) == MAX_NUMBER


class ExplodingPipeline(Pipeline):
    """A real pipeline that fails on one service, as an unknown bug class would."""

    def process(self, event: Any, where: Any = None) -> list[Alert]:
        if getattr(event, "service", "") == "boom":
            secret_local = "hunter2-in-a-local"  # noqa: F841 - must never reach a log line
            raise RuntimeError("detector blew up on purpose")
        return super().process(event, where)


def test_any_exception_while_handling_a_record_dead_letters_it_as_internal() -> None:
    metrics = SelfMetrics()
    pipeline = ExplodingPipeline(load_rules((str(REPO / "rules"),)))
    proc = BatchProcessor(pipeline=_Fixed(pipeline), metrics=metrics, clock=_Fixed(NOW), topic_sources={"watchkeeper.inference": "inference"})
    boom = json.dumps(inference(service="boom")).encode()
    with capture_logs() as logs:
        out = proc.process([record(inference(), 0), Rec(boom, topic="watchkeeper.inference", offset=1), record(inference(ts=NOW + 1), 2)])
    assert out.processed == 2
    [dl] = out.dead_letters
    assert (dl.kind, dl.offset, dl.value) == ("internal", 1, boom)
    assert dl.reason == "internal: RuntimeError: detector blew up on purpose"
    sample = metrics.registry.get_sample_value
    assert sample("watchkeeper_events_total", {"source": "inference", "outcome": "dead_letter"}) == 1
    assert sample("watchkeeper_events_total", {"source": "inference", "outcome": "processed"}) == 2
    assert sample("watchkeeper_dead_letters_total", {"topic": "watchkeeper.inference", "reason": "internal"}) == 1
    [failed] = [line for line in logs if line["event"] == "event handling failed; dead-lettered"]
    assert failed["log_level"] == "error" and failed["offset"] == 1
    assert failed["error"] == "internal: RuntimeError: detector blew up on purpose"
    assert "test_record_safety.py" in failed["traceback"]  # the stack says where
    assert "exc_info" not in failed  # a renderer could print locals from it
    assert "hunter2" not in repr(logs)  # the stack, never the locals


class ExplodingTick(Pipeline):
    def tick(self, now: float | None = None) -> list[Alert]:
        raise ZeroDivisionError("tick")


def test_a_failing_evaluation_after_the_batch_does_not_fail_the_batch() -> None:
    metrics = SelfMetrics()
    pipeline = ExplodingTick(load_rules((str(REPO / "rules"),)))
    proc = BatchProcessor(pipeline=_Fixed(pipeline), metrics=metrics, clock=_Fixed(NOW))
    out = proc.process([record(inference())])
    assert out.processed == 1 and not out.dead_letters


def _alert(evidence: dict[str, Any], value: float = 1.0, labels: dict[str, str] | None = None) -> Alert:
    return Alert(
        fingerprint="f00", rule_id="r", state=AlertState.FIRING, labels=labels or {"alertname": "A"},
        annotations={"summary": "s"}, active_at=NOW, value=value, fired_at=NOW, evidence=evidence, series=("svc",),
    )


class Recorder:
    """A Publisher that keeps what it was asked to publish."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def publish(self, message: Any, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        self.sent.append(message)


@pytest.mark.parametrize(
    "evidence",
    [
        pytest.param({"features": {"a", "b"}}, id="set"),
        pytest.param({"nested": {"x": math.nan, "y": [math.inf, -math.inf]}}, id="nested-non-finite"),
        pytest.param({"tokens": HUGE}, id="huge-int"),
        pytest.param({"tokens": 10**5000}, id="int-beyond-str-limit"),
        pytest.param({"raw": b"\xff\xfe"}, id="bytes"),
        pytest.param({(1, 2): "tuple key"}, id="tuple-key"),
        pytest.param({"obj": object()}, id="object"),
        pytest.param({"s": "\ud800 lone surrogate"}, id="surrogate"),
    ],
)
def test_publishing_an_alert_never_fails_on_its_evidence(evidence: dict[str, Any]) -> None:
    broker = Recorder()
    auth = RecordAuth(TopicKeys((TopicKey.of(b"k" * 32),)), TopicRole.ALERTS, topic="alerts")
    asyncio.run(_gather(publish_alerts(broker, [_alert(evidence)], "alerts", auth=auth)))
    [body] = broker.sent
    decoded = json.loads(body, parse_constant=_no_constants)
    assert decoded["fingerprint"] == "f00" and decoded["state"] == "firing"
    _assert_exact_json(decoded)


async def _gather(sends: list[Any]) -> None:
    await asyncio.gather(*sends)


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not standard JSON")


def _assert_exact_json(value: Any) -> None:
    """Every integer is one any JSON reader (float64) holds exactly."""
    if isinstance(value, dict):
        for v in value.values():
            _assert_exact_json(v)
    elif isinstance(value, list):
        for v in value:
            _assert_exact_json(v)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) <= 2**53, value


def test_encode_alert_keeps_plain_values_as_they_are() -> None:
    alert = _alert({"threshold": 100, "mean": 120.5, "stale": True, "note": None, "top": ["a", 1]})
    assert json.loads(encode_alert(alert)) == alert.to_dict()


def test_a_handler_error_is_logged_and_a_partition_that_cannot_advance_turns_readyz_red(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: Slow\n    source: inference\n"
        "    detector: {kind: threshold, field: latency_ms, op: '>', threshold: 100}\n"
    )
    config = AgentConfig(kafka=KafkaConfig("localhost:9092"), rules=(str(rules),), http_addr="127.0.0.1:0", stall_batches=3)
    app = AgentApp(config, TerminalSink(), serve_http=False, metrics=SelfMetrics())
    app._started = True  # noqa: SLF001 - readiness of a running agent, without a broker
    app.broker = FailingBroker()  # type: ignore[assignment] - the dead-letter topic cannot be written
    batch = [Rec(b"{broken", topic=config.topics.inference, offset=40), Rec(b"{also", topic=config.topics.inference, offset=41)]

    def stalled() -> float | None:
        return app.metrics.registry.get_sample_value(
            "watchkeeper_partition_stalled", {"topic": config.topics.inference, "partition": "0"}
        )

    with capture_logs() as logs:
        for attempt in range(3):
            assert app.readiness() == (True, ""), attempt
            with pytest.raises(ConnectionError):
                asyncio.run(app.consume_events(batch))
    ready, reason = app.readiness()
    assert not ready
    assert f"{config.topics.inference}/0" in reason and "offset 40" in reason and "3 times" in reason
    assert stalled() == 1
    failures = [line for line in logs if line["event"] == "handler failed; its batch will be redelivered"]
    assert len(failures) == 3 and failures[0]["handler"] == "events"
    assert failures[0]["error"] == "ConnectionError: broker unreachable" and "exc_info" not in failures[0]

    app.broker = Recorder()  # type: ignore[assignment] - the broker is back
    asyncio.run(app.consume_events(batch))
    assert app.readiness() == (True, "")
    assert stalled() == 0


class FailingBroker:
    async def publish(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")
