"""Retrieval and feedback helpers and the new optional llm fields: typed, bounded, never blocking."""

from __future__ import annotations

import math
import time

import pytest

from watchkeeper_emit import Emitter, LlmTracker, RagRecorder, feedback_event, llm_event, retrieval_event
from watchkeeper_emit.events import EMBEDDING_MAX_DIMS, SAFETY_MAX_CATEGORIES


class Sink:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, event: dict) -> bool:
        self.events.append(event)
        return True


def _llm(**extra) -> dict:
    return llm_event("bot", "m", prompt_version=3, tenant="t", prompt_tokens=1, completion_tokens=2, latency_ms=5, ts=1.0,
                     **extra)


def test_retrieval_event_carries_hits_scores_and_a_bounded_embedding():
    e = retrieval_event("bot", "docs", 2, latency_ms=4.0, k=5, hits=3, top_score=0.8, mean_score=0.6,
                        request_id="r1", embedding=[0.123456789, -1.0], ts=1.0)
    assert e["type"] == "retrieval" and e["index_version"] == "2" and (e["k"], e["hits"]) == (5, 3)
    assert e["embedding"] == [0.12346, -1.0] and e["request_id"] == "r1"
    empty = retrieval_event("bot", "docs", "v2", latency_ms=1.0, k=5, hits=0, ts=1.0)
    assert "top_score" not in empty and "mean_score" not in empty and "embedding" not in empty


@pytest.mark.parametrize(
    "bad",
    [
        {"hits": 6},  # more hits than asked for
        {"hits": -1},
        {"k": 2.5},
        {"k": 0, "hits": 0},
        {"request_id": "r" * 257},
        {"embedding": [2e6]},
        {"latency_ms": float("nan")},
        {"top_score": math.inf},
        {"embedding": []},
        {"embedding": [0.0] * (EMBEDDING_MAX_DIMS + 1)},
        {"embedding": [0.0, float("nan")]},
        {"status": "timeout"},
    ],
)
def test_retrieval_event_refuses_what_the_agent_would_dead_letter(bad):
    kwargs = {"latency_ms": 1.0, "k": 5, "hits": 1, **bad}
    with pytest.raises(ValueError):
        retrieval_event("bot", "docs", 1, **kwargs)


def test_llm_event_optional_response_fields():
    assert set(_llm()) >= {"type", "prompt_version"} and "safety" not in _llm() and "embedding" not in _llm()
    e = _llm(request_id="r1", flagged=True, safety_categories=["violence", "hate", "violence"], refusal=False,
             eval_score=0.75, embedding=[1, 0])
    assert e["safety"] == {"flagged": True, "categories": ["hate", "violence"]}
    assert (e["request_id"], e["refusal"], e["eval_score"], e["embedding"]) == ("r1", False, 0.75, [1.0, 0.0])
    assert _llm(flagged=False)["safety"] == {"flagged": False, "categories": []}
    assert _llm(safety_categories=["self-harm"])["safety"]["flagged"] is True  # categories imply a flag


@pytest.mark.parametrize(
    "bad",
    [
        {"eval_score": 1.5},
        {"eval_score": -0.1},
        {"safety_categories": [f"c{i}" for i in range(SAFETY_MAX_CATEGORIES + 1)]},
        {"safety_categories": ["x" * 65]},
        {"safety_categories": [""]},
        {"embedding": [0.0] * (EMBEDDING_MAX_DIMS + 1)},
    ],
)
def test_llm_event_bounds_the_new_fields(bad):
    with pytest.raises(ValueError):
        _llm(**bad)


@pytest.mark.parametrize("score", [-1.01, 1.01, float("nan")])
def test_feedback_score_is_bounded(score):
    with pytest.raises(ValueError):
        feedback_event("bot", request_id="r", prompt_version=1, score=score)


def test_feedback_needs_the_request_it_rates():
    with pytest.raises(ValueError, match="request_id"):
        feedback_event("bot", request_id="", prompt_version=1, score=1)
    e = feedback_event("bot", request_id="r", prompt_version=7, score=-1, labels={"tenant": "a"}, ts=2.0)
    assert (e["type"], e["prompt_version"], e["score"], e["labels"]) == ("feedback", "7", -1.0, {"tenant": "a"})


def test_recorder_times_a_search_and_records_a_failed_one():
    sink = Sink()
    rag = RagRecorder(sink, service="bot", labels={"env": "test"})

    def search(query, k):
        time.sleep(0.01)
        return [("doc-1", 0.9), ("doc-2", 0.3)]

    assert rag.search(search, [0.6, 0.8], k=4, index="docs", index_version=2, request_id="r1") == [("doc-1", 0.9), ("doc-2", 0.3)]
    e = sink.events[0]
    assert (e["hits"], e["top_score"], e["mean_score"], e["embedding"]) == (2, 0.9, 0.6, [0.6, 0.8])
    assert e["latency_ms"] >= 10 and e["labels"] == {"env": "test"} and e["request_id"] == "r1"

    def broken(query, k):
        raise TimeoutError("index unreachable")

    with pytest.raises(TimeoutError):
        rag.search(broken, [1.0], k=4, index="docs", index_version=2)
    assert (sink.events[1]["status"], sink.events[1]["hits"]) == ("error", 0)

    quiet = RagRecorder(sink, service="bot", send_embeddings=False)
    quiet.search(search, [1.0], k=2, index="docs", index_version=2)
    assert "embedding" not in sink.events[-1]


def test_recorder_needs_a_service(monkeypatch):
    monkeypatch.delenv("WATCHKEEPER_SERVICE", raising=False)
    with pytest.raises(ValueError, match="WATCHKEEPER_SERVICE"):
        RagRecorder(Sink())


def test_llm_tracker_passes_the_response_fields():
    sink = Sink()
    LlmTracker(sink, service="bot").record(
        {"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}, tenant="t", prompt_version=2,
        latency_ms=1.0, request_id="r9", flagged=True, safety_categories=["pii"], refusal=True, eval_score=0.2,
    )
    e = sink.events[0]
    assert (e["request_id"], e["safety"], e["refusal"], e["eval_score"]) == ("r9", {"flagged": True, "categories": ["pii"]}, True, 0.2)


async def test_recording_never_waits_on_a_full_emitter():
    emitter = Emitter("127.0.0.1:1", max_buffer=10, register_metrics=False)  # never started: nothing drains
    rag = RagRecorder(emitter, service="bot")
    vector = [0.01] * 384
    started = time.perf_counter()
    accepted = [rag.retrieval("docs", 1, latency_ms=1, k=5, scores=[0.5], embedding=vector) for _ in range(500)]
    accepted += [rag.feedback("r", prompt_version=1, score=1) for _ in range(500)]
    assert time.perf_counter() - started < 1.0
    assert accepted.count(True) == 10 and emitter.dropped_by_reason["buffer_full"] == 990
    await emitter.close(timeout_s=0.1)


def test_builders_produce_contract_events():
    from agent.model import EVENT_ADAPTER

    events = [
        retrieval_event("bot", "docs", 2, latency_ms=4.0, k=5, hits=3, top_score=0.8, mean_score=0.6,
                        request_id="r1", embedding=[0.1] * 384, ts=1.0),
        retrieval_event("bot", "docs", 2, latency_ms=4.0, k=5, hits=0, ts=1.0),
        feedback_event("bot", request_id="r1", prompt_version=3, score=-1, ts=1.0),
        _llm(request_id="r1", flagged=True, safety_categories=["hate"], refusal=False, eval_score=0.5, embedding=[0.2] * 384),
    ]
    parsed = [EVENT_ADAPTER.validate_python(e) for e in events]
    assert [p.type for p in parsed] == ["retrieval", "retrieval", "feedback", "llm"]
    assert parsed[0].index_version == "2" and parsed[0].hits == 3 and len(parsed[0].embedding) == 384
    assert parsed[2].score == -1.0 and parsed[3].request_id == "r1"
