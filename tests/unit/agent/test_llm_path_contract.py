"""The LLM path's wire contract: retrieval and feedback events, and the new llm fields.

Every new field is bounded (vector length, categories, integers, scores), so a hostile
producer's record ends in the dead-letter topic with a reason that names the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest

from agent.config import Topics
from agent.model import EVENT_ADAPTER, SOURCES, FeedbackEvent, LlmEvent, RetrievalEvent
from agent.rules.fields import DEFAULT_BY, EVENT_TYPES, check_field
from agent.runtime.ingest import BatchProcessor
from agent.runtime.pipeline import Pipeline
from agent.runtime.selfmetrics import SelfMetrics
from tests.unit.agent.rulebook import one_rule

NOW = 1_700_000_000.0
TOPICS = Topics()


@dataclass
class Rec:
    value: bytes | None
    topic: str
    offset: int = 0
    partition: int = 0
    key: bytes | None = b"svc"
    timestamp: int = 0


def retrieval(**over):
    base = {"type": "retrieval", "ts": NOW, "service": "svc", "index": "docs", "index_version": 42, "latency_ms": 12.0,
            "k": 5, "hits": 5, "top_score": 0.8, "mean_score": 0.6, "status": "ok"}  # fmt: skip
    base.update(over)
    return base


def llm(**over):
    base = {"type": "llm", "ts": NOW, "service": "svc", "model": "m", "prompt_version": 3, "tenant": "t",
            "prompt_tokens": 10, "completion_tokens": 5, "latency_ms": 100.0, "status": "ok"}  # fmt: skip
    base.update(over)
    return base


def feedback(**over):
    base = {"type": "feedback", "ts": NOW, "service": "svc", "request_id": "r1", "prompt_version": "3", "score": 1}
    base.update(over)
    return base


def test_new_sources_are_registered_everywhere():
    assert {"retrieval", "feedback"} <= set(SOURCES)
    assert set(SOURCES) == set(EVENT_TYPES)
    assert TOPICS.sources()["watchkeeper.retrieval"] == "retrieval"
    assert TOPICS.sources()["watchkeeper.feedback"] == "feedback"
    assert {"watchkeeper.retrieval", "watchkeeper.feedback"} <= set(TOPICS.all())
    assert DEFAULT_BY["retrieval"] == ("service", "index", "index_version")
    assert DEFAULT_BY["feedback"] == ("service", "prompt_version")


def test_a_full_retrieval_event_parses():
    event = EVENT_ADAPTER.validate_python(retrieval(request_id="r1", embedding=[0.1, -0.2, 0.3], labels={"a": "b"}))
    assert isinstance(event, RetrievalEvent)
    assert event.index_version == "42" and event.embedding == (0.1, -0.2, 0.3) and event.owner == "svc"
    assert event.empty == 0.0
    assert EVENT_ADAPTER.validate_python(retrieval(hits=0, top_score=None, mean_score=None)).empty == 1.0


def test_llm_events_carry_the_optional_path_fields():
    plain = EVENT_ADAPTER.validate_python(llm())
    assert plain.safety is None and plain.flagged is None and plain.refused is None and plain.embedding is None
    event = EVENT_ADAPTER.validate_python(
        llm(request_id="r1", safety={"flagged": True, "categories": ["violence"]}, refusal=False, eval_score=0.7, embedding=[1.0, 0.0])
    )
    assert isinstance(event, LlmEvent)
    assert event.flagged == 1.0 and event.refused == 0.0 and event.safety.categories == ("violence",)
    assert event.eval_score == 0.7 and event.embedding == (1.0, 0.0)


def test_feedback_event_parses():
    event = EVENT_ADAPTER.validate_python(feedback(prompt_version=12, score=-0.5))
    assert isinstance(event, FeedbackEvent) and event.prompt_version == "12" and event.score == -0.5


@pytest.mark.parametrize("name", ["flagged", "refused", "eval_score", "request_id", "labels.x"])
def test_rules_may_name_the_llm_fields(name):
    assert check_field("llm", name) is None


@pytest.mark.parametrize("name", ["empty", "hits", "top_score", "mean_score", "latency_ms", "index_version", "labels.x"])
def test_rules_may_name_the_retrieval_fields(name):
    assert check_field("retrieval", name) is None


BAD = [
    (retrieval(embedding=[0.0] * 1025), "retrieval", "embedding"),
    (retrieval(embedding=[]), "retrieval", "embedding"),
    (retrieval(embedding=[0.1, math.nan]), "retrieval", "embedding"),
    (retrieval(embedding=[0.1, math.inf]), "retrieval", "embedding"),
    (retrieval(embedding=[0.1, 1e300]), "retrieval", "embedding"),
    (retrieval(embedding=["a"]), "retrieval", "embedding"),
    (retrieval(hits=-1), "retrieval", "hits"),
    (retrieval(hits=2**53 + 1), "retrieval", "hits"),
    (retrieval(k=0), "retrieval", "k"),
    (retrieval(k=2**64), "retrieval", "k"),
    (retrieval(top_score=math.nan), "retrieval", "top_score"),
    (retrieval(top_score=1e300), "retrieval", "top_score"),
    (retrieval(status="maybe"), "retrieval", "status"),
    (retrieval(index=""), "retrieval", "index"),
    (retrieval(index_version="v" * 257), "retrieval", "index_version"),
    ({k: v for k, v in retrieval().items() if k != "index"}, "retrieval", "index"),
    (llm(safety={"flagged": "perhaps"}), "llm", "safety"),
    (llm(safety={"categories": ["x"]}), "llm", "safety"),
    (llm(safety={"flagged": True, "categories": ["c"] * 17}), "llm", "safety"),
    (llm(safety={"flagged": True, "categories": ["x" * 65]}), "llm", "safety"),
    (llm(safety={"flagged": True, "categories": [""]}), "llm", "safety"),
    (llm(eval_score=1.5), "llm", "eval_score"),
    (llm(eval_score=math.nan), "llm", "eval_score"),
    (llm(embedding=[0.0] * 2000), "llm", "embedding"),
    (llm(refusal="sometimes"), "llm", "refusal"),
    (feedback(score=2), "feedback", "score"),
    (feedback(score=math.nan), "feedback", "score"),
    (feedback(score=-math.inf), "feedback", "score"),
    ({k: v for k, v in feedback().items() if k != "request_id"}, "feedback", "request_id"),
    (feedback(request_id="r" * 300), "feedback", "request_id"),
]


@pytest.mark.parametrize(("payload", "source", "reason"), BAD)
def test_out_of_bounds_records_become_dead_letters_naming_the_field(payload, source, reason):
    metrics = SelfMetrics()
    pipeline = Pipeline(one_rule("{kind: threshold, field: latency_ms, op: '>', threshold: 100}"))
    topic = {"retrieval": TOPICS.retrieval, "llm": TOPICS.llm, "feedback": TOPICS.feedback}[source]
    proc = BatchProcessor(pipeline=lambda: pipeline, metrics=metrics, clock=lambda: NOW, topic_sources=TOPICS.sources())
    value = json.dumps(payload, allow_nan=True).encode()
    good = json.dumps({"llm": llm(), "retrieval": retrieval(), "feedback": feedback()}[source]).encode()
    out = proc.process([Rec(good, topic), Rec(value, topic, offset=7)])
    assert out.processed == 1
    [dl] = out.dead_letters
    assert reason in dl.reason and dl.offset == 7 and dl.value == value
    assert metrics.registry.get_sample_value("watchkeeper_events_total", {"source": source, "outcome": "dead_letter"}) == 1


def _rule(source: str, detector: str) -> str:
    return f"""
groups:
  - name: g
    rules:
      - alert: A
        source: {source}
        detector: {detector}
"""


@pytest.mark.parametrize(
    ("source", "detector", "fragment"),
    [
        ("retrieval", "{kind: embedding_drift, field: latency_ms}", "observes an embedding"),
        ("feedback", "{kind: embedding_drift, field: score}", "none on feedback events"),
        ("llm", "{kind: threshold, field: embedding, op: '>', threshold: 1}", "'embedding' is a vector"),
    ],
)
def test_vector_fields_and_vector_detectors_go_together(source, detector, fragment):
    from agent.errors import RuleFileErrors
    from agent.rules.loader import load_rule_file

    with pytest.raises(RuleFileErrors, match=fragment):
        load_rule_file("r.yaml", _rule(source, detector))
    assert load_rule_file("ok.yaml", _rule("llm", "{kind: embedding_drift, field: embedding}"))


def test_schema_prints_the_new_sources_with_their_bounds():
    from typer.testing import CliRunner

    from agent.cli import app

    retrieval = json.loads(CliRunner().invoke(app, ["schema", "--source", "retrieval"]).stdout)
    assert {"index", "index_version", "hits", "top_score", "embedding"} <= set(retrieval["properties"])
    vector = next(v for v in retrieval["properties"]["embedding"]["anyOf"] if v.get("type") == "array")
    assert vector["maxItems"] == 1024
    feedback = json.loads(CliRunner().invoke(app, ["schema", "--source", "feedback"]).stdout)
    assert feedback["properties"]["score"]["minimum"] == -1 and feedback["properties"]["score"]["maximum"] == 1
