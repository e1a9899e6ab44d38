"""Simulated RAG services: per request a ``retrieval``, an ``llm`` and sometimes a ``feedback`` event.

The three events of one request share a ``request_id`` and come from one seeded arrival
sequence, but they are generated as three sorted streams (retrieval at the arrival, the
answer after the retrieval, the rating ``feedback_delay_s`` later), so the fleet's
merge keeps event-time order without buffering.

Query embeddings come from a mixture of topics: fixed random unit centroids (seeded by
the service, so a scenario's reference and current windows share them) plus Gaussian
noise, normalised. A ``query_drift`` fault draws a share of queries from topics no one
asked about before (see :mod:`simulations.faults`).

>>> from simulations.scenario import RagService
>>> svc = RagService(service="bot", rate_per_s=1, feedback_ratio=1.0, feedback_delay_s=2)
>>> streams = rag_events(svc, start_ts=0.0, duration_s=4, seed="s")
>>> [[(e["type"][0], e["request_id"]) for _, e in stream] for stream in streams]  # doctest: +NORMALIZE_WHITESPACE
[[('r', 'bot-0'), ('r', 'bot-1'), ('r', 'bot-2'), ('r', 'bot-3')],
 [('l', 'bot-0'), ('l', 'bot-1'), ('l', 'bot-2'), ('l', 'bot-3')],
 [('f', 'bot-0'), ('f', 'bot-1')]]
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

from .scenario import QueryTopics, RagService

__all__ = ["TopicSpace", "rag_events"]

Timed = tuple[float, dict[str, Any]]


class TopicSpace:
    """Topic centroids in an embedding space; ``sample`` draws a query vector near one."""

    def __init__(self, spec: QueryTopics, seed: str, extra_topics: int = 0) -> None:
        rng = random.Random(f"{seed}/centroids")
        self.spec = spec
        self.centroids = [self._unit([rng.gauss(0, 1) for _ in range(spec.dims)]) for _ in range(spec.topics + extra_topics)]

    @staticmethod
    def _unit(vector: list[float]) -> list[float]:
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def sample(self, rng: random.Random, topic: int) -> list[float]:
        centroid = self.centroids[topic]
        noisy = [c + rng.gauss(0, self.spec.spread / math.sqrt(self.spec.dims)) for c in centroid]
        return [round(x, 4) for x in self._unit(noisy)]

    def topic(self, rng: random.Random) -> int:
        weights = self.spec.weights or [1.0] * self.spec.topics
        return rng.choices(range(self.spec.topics), weights[: self.spec.topics])[0]


def _arrivals(svc: RagService, duration_s: float, seed: str) -> Iterator[tuple[int, float, str]]:
    """``(n, offset, tenant)`` of every request, the same sequence for each of the three streams."""
    rng = random.Random(f"{seed}/arrivals")
    tenants, weights = list(svc.tenants), list(svc.tenants.values())
    offset, n = rng.random() / svc.rate_per_s, 0
    while offset < duration_s:
        yield n, offset, rng.choices(tenants, weights)[0]
        n += 1
        offset += rng.expovariate(svc.rate_per_s)


def _rid(svc: RagService, n: int) -> str:
    return f"{svc.service}-{n}"


def _retrieval(svc: RagService, start_ts: float, duration_s: float, seed: str) -> Iterator[Timed]:
    rng = random.Random(f"{seed}/retrieval")
    space = TopicSpace(svc.queries, seed) if svc.queries is not None else None
    for n, offset, _tenant in _arrivals(svc, duration_s, seed):
        empty = rng.random() < svc.empty_ratio
        top = min(1.0, max(0.0, rng.gauss(svc.top_score, svc.top_score_sd)))
        event: dict[str, Any] = {
            "type": "retrieval",
            "ts": round(start_ts + offset, 3),
            "service": svc.service,
            "index": svc.index,
            "index_version": svc.index_version,
            "latency_ms": round(max(0.5, rng.gauss(svc.retrieval_latency_ms, svc.retrieval_latency_ms / 4)), 2),
            "k": svc.k,
            "hits": 0 if empty else svc.k,
            "status": "ok",
            "request_id": _rid(svc, n),
        }
        if not empty:
            event["top_score"] = round(top, 4)
            event["mean_score"] = round(top * svc.mean_score_ratio, 4)
        if space is not None:
            event["embedding"] = space.sample(rng, space.topic(rng))
        yield offset, event


def _answer(svc: RagService, start_ts: float, duration_s: float, seed: str) -> Iterator[Timed]:
    rng = random.Random(f"{seed}/llm")
    space = TopicSpace(svc.queries, f"{seed}/responses") if svc.queries is not None and svc.response_embeddings else None
    for n, offset, tenant in _arrivals(svc, duration_s, seed):
        at = offset + svc.retrieval_latency_ms / 1000.0  # the answer follows its retrieval
        if at >= duration_s:
            continue
        completion = max(1, int(rng.lognormvariate(math.log(svc.completion_tokens), 0.4)))
        flagged = rng.random() < svc.flagged_ratio
        event: dict[str, Any] = {
            "type": "llm",
            "ts": round(start_ts + at, 3),
            "service": svc.service,
            "model": svc.model,
            "prompt_version": svc.prompt_version,
            "tenant": tenant,
            "prompt_tokens": max(1, int(rng.lognormvariate(math.log(svc.prompt_tokens), 0.3))),
            "completion_tokens": completion,
            "latency_ms": round(svc.latency_ms * (0.3 + completion / svc.completion_tokens * 0.7), 1),
            "status": "error" if rng.random() < svc.error_ratio else "ok",
            "request_id": _rid(svc, n),
            "safety": {"flagged": flagged, "categories": ["toxicity"] if flagged else []},
            "refusal": rng.random() < svc.refusal_ratio,
            "eval_score": round(min(1.0, max(0.0, rng.gauss(svc.groundedness, 0.08))), 4),
        }
        if space is not None:
            event["embedding"] = space.sample(rng, space.topic(rng))
        yield at, event


def _feedback(svc: RagService, start_ts: float, duration_s: float, seed: str) -> Iterator[Timed]:
    rng = random.Random(f"{seed}/feedback")
    for n, offset, tenant in _arrivals(svc, duration_s, seed):
        at = offset + svc.feedback_delay_s
        if at >= duration_s or rng.random() >= svc.feedback_ratio:
            continue
        yield at, {
            "type": "feedback",
            "ts": round(start_ts + at, 3),
            "service": svc.service,
            "request_id": _rid(svc, n),
            "prompt_version": svc.prompt_version,
            "score": 1.0 if rng.random() < svc.thumbs_up_ratio else -1.0,
            "labels": {"model": svc.model, "tenant": tenant},
        }


def rag_events(svc: RagService, start_ts: float, duration_s: float, seed: str) -> Sequence[Iterator[Timed]]:
    """The three sorted streams of one RAG service (retrieval, llm, feedback)."""
    return [
        _retrieval(svc, start_ts, duration_s, seed),
        _answer(svc, start_ts, duration_s, seed),
        _feedback(svc, start_ts, duration_s, seed),
    ]
