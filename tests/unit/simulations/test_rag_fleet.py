"""The simulated RAG fleet and its faults, without a broker: valid events, joined requests, faults in their window."""

from __future__ import annotations

import math
import random
from collections import Counter

from agent.model import EVENT_ADAPTER
from simulations.faults import BadIndex, ModelChange, QueryDrift, UnsafePrompt
from simulations.fleet import fleet_events
from simulations.scenario import Fleet

FLEET = Fleet.model_validate({"rag": [{"service": "bot", "rate_per_s": 5, "feedback_ratio": 0.5, "feedback_delay_s": 10,
                                        "queries": {"dims": 16, "topics": 4}, "response_embeddings": True}]})


def _events(faults=(), duration_s=300.0, seed=3):
    return list(fleet_events(FLEET, list(faults), start_ts=1_764_000_000.0, duration_s=duration_s, seed=seed))


def test_rag_events_are_valid_ordered_and_joined_by_request_id():
    events = _events()
    offsets = [o for o, _ in events]
    assert offsets == sorted(offsets)
    kinds = Counter(e["type"] for _, e in events)
    assert kinds["retrieval"] > 1000 and kinds["llm"] == kinds["retrieval"] and 0.35 < kinds["feedback"] / kinds["llm"] < 0.55
    parsed = [EVENT_ADAPTER.validate_python(e) for _, e in events]  # every one passes the wire contract
    by_type = {t: {p.request_id for p in parsed if p.type == t} for t in ("retrieval", "llm", "feedback")}
    assert by_type["feedback"] < by_type["llm"] == by_type["retrieval"]
    vectors = [p.embedding for p in parsed if p.type == "retrieval"]
    assert {len(v) for v in vectors} == {16} and all(abs(math.hypot(*v) - 1) < 1e-3 for v in vectors)
    assert _events() == events  # same seed, same events


def test_bad_index_empties_lookups_of_the_new_build_only_in_its_window():
    fault = BadIndex(where={"service": "bot"}, start_s=100, duration_s=100, to_version="2", empty_ratio=0.5)
    events = [(o, e) for o, e in _events([fault]) if e["type"] == "retrieval"]
    inside = [e for o, e in events if 100 <= o < 200]
    outside = [e for o, e in events if not 100 <= o < 200]
    assert {e["index_version"] for e in inside} == {"2"} and {e["index_version"] for e in outside} == {"1"}
    assert 0.4 < sum(e["hits"] == 0 for e in inside) / len(inside) < 0.6
    assert sum(e["hits"] == 0 for e in outside) / len(outside) < 0.05
    assert all("top_score" not in e for e in inside if e["hits"] == 0)


def test_unsafe_prompt_flags_answers_and_tags_their_feedback():
    fault = UnsafePrompt(where={"service": "bot"}, start_s=0, duration_s=300, to_version="13", flagged_ratio=0.2)
    events = [e for _, e in _events([fault])]
    answers = [e for e in events if e["type"] == "llm"]
    assert {e["prompt_version"] for e in events if e["type"] in ("llm", "feedback")} == {"13"}
    assert 0.15 < sum(e["safety"]["flagged"] for e in answers) / len(answers) < 0.25


def test_query_drift_moves_embeddings_to_new_topics():
    fault = QueryDrift(where={"service": "bot"}, start_s=0, duration_s=300, share=1.0, topics=2)
    before = [e["embedding"] for _, e in _events() if e["type"] == "retrieval"]
    after = [e["embedding"] for _, e in _events([fault]) if e["type"] == "retrieval"]

    def mean(vectors):
        return [sum(col) / len(vectors) for col in zip(*vectors, strict=True)]

    shift = math.dist(mean(before), mean(after))
    assert shift > 0.3, shift
    assert all(abs(math.hypot(*v) - 1) < 1e-3 for v in after)
    rng = random.Random(0)
    e = {"type": "llm", "embedding": [1.0, 0.0]}
    assert fault.transform(dict(e), 1.0, rng) == [e]  # only query (retrieval) embeddings move


def test_model_change_renames_the_model_and_lowers_feedback():
    fault = ModelChange(where={"service": "bot"}, start_s=0, duration_s=300, to_model="m2", to_version="8", thumbs_up_ratio=0.2)
    events = [e for _, e in _events([fault])]
    feedback = [e for e in events if e["type"] == "feedback"]
    assert {e["model"] for e in events if e["type"] == "llm"} == {"m2"} and {e["labels"]["model"] for e in feedback} == {"m2"}
    assert {e["prompt_version"] for e in events if e["type"] in ("llm", "feedback")} == {"8"}
    assert sum(e["score"] > 0 for e in feedback) / len(feedback) < 0.3
