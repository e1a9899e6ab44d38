"""Record the retrieval and feedback steps of a RAG service as ``retrieval`` and ``feedback`` events.

The LLM call in between is :class:`~watchkeeper_emit.llm.LlmTracker`'s; one
``request_id`` ties the three events of an answer together::

    rag = RagRecorder(emitter, service="support-bot")
    hits = rag.search(index.search, query_vector, k=5, index="docs", index_version="2", request_id=rid)
    ...
    rag.feedback(rid, prompt_version="12", score=+1)     # thumbs up, later

Recording never waits: the events go to the emitter's bounded buffer (``emit`` drops
and counts when it is full). A malformed value (a negative latency, a NaN score, an
embedding longer than the contract allows) raises ``ValueError`` at the call, where
the bug is, instead of sending an event the agent would dead-letter.

>>> class Sink:
...     def __init__(self): self.events = []
...     def emit(self, event): self.events.append(event); return True
>>> sink = Sink()
>>> rag = RagRecorder(sink, service="bot")
>>> rag.retrieval("docs", 2, latency_ms=3.5, k=4, scores=[0.9, 0.5], ts=0)
True
>>> e = sink.events[0]
>>> e["type"], e["index_version"], e["hits"], e["top_score"], e["mean_score"]
('retrieval', '2', 2, 0.9, 0.7)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .events import feedback_event, retrieval_event

__all__ = ["RagRecorder", "scores_of"]

T = TypeVar("T")


def scores_of(result: Any) -> list[float]:
    """Similarity scores of a search result: a list of floats, of ``(doc, score)`` pairs or of ``.score`` objects."""
    scores: list[float] = []
    for item in result or ():
        if isinstance(item, (int, float)):
            scores.append(float(item))
        elif isinstance(item, tuple) and len(item) == 2:
            scores.append(float(item[1]))
        else:
            scores.append(float(item.score))
    return scores


class RagRecorder:
    """Emits one ``retrieval`` event per index lookup and one ``feedback`` event per user verdict.

    Parameters
    ----------
    emitter
        Anything with ``emit(event) -> bool`` (an :class:`~watchkeeper_emit.Emitter`).
    service
        The RAG service (the Kafka key); default ``WATCHKEEPER_SERVICE``.
    labels
        Static labels on every event.
    send_embeddings
        Put the query's vector on retrieval events (what ``embedding_drift`` watches).
    """

    def __init__(
        self,
        emitter: Any,
        *,
        service: str | None = None,
        labels: Mapping[str, str] | None = None,
        send_embeddings: bool = True,
    ) -> None:
        self.emitter = emitter
        self.service = service or os.environ.get("WATCHKEEPER_SERVICE", "")
        if not self.service:
            raise ValueError("RagRecorder needs service (or WATCHKEEPER_SERVICE)")
        self.labels = dict(labels or {})
        self.send_embeddings = send_embeddings

    def retrieval(
        self,
        index: str,
        index_version: str | int,
        *,
        latency_ms: float,
        k: int,
        scores: Sequence[float],
        status: str = "ok",
        request_id: str | None = None,
        embedding: Sequence[float] | None = None,
        labels: Mapping[str, str] | None = None,
        ts: float | None = None,
    ) -> bool:
        """Emit the event of one lookup that returned ``scores`` (one per hit, any order)."""
        event = retrieval_event(
            self.service,
            index,
            index_version,
            latency_ms=latency_ms,
            k=k,
            hits=len(scores),
            top_score=max(scores) if scores else None,
            mean_score=sum(scores) / len(scores) if scores else None,
            status=status,
            request_id=request_id,
            embedding=embedding if self.send_embeddings else None,
            labels={**self.labels, **(labels or {})},
            ts=ts,
        )
        return self.emitter.emit(event)

    def search(
        self,
        fn: Callable[..., T],
        query: Sequence[float],
        *,
        k: int,
        index: str,
        index_version: str | int,
        request_id: str | None = None,
        scores: Callable[[T], list[float]] = scores_of,
        labels: Mapping[str, str] | None = None,
    ) -> T:
        """``fn(query, k)`` timed and recorded; a lookup that raises is emitted with ``status: error``.

        ``scores`` reads the hits' similarities from what ``fn`` returned (default
        :func:`scores_of`). The exception of a failed lookup propagates unchanged.
        """
        started = time.perf_counter()
        try:
            result = fn(query, k)
        except BaseException:
            self.retrieval(index, index_version, latency_ms=(time.perf_counter() - started) * 1000.0, k=k, scores=[],
                           status="error", request_id=request_id, embedding=query, labels=labels)
            raise
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.retrieval(index, index_version, latency_ms=latency_ms, k=k, scores=scores(result),
                       request_id=request_id, embedding=query, labels=labels)
        return result

    def feedback(
        self,
        request_id: str,
        *,
        prompt_version: str | int,
        score: float,
        labels: Mapping[str, str] | None = None,
        ts: float | None = None,
    ) -> bool:
        """Emit a user's verdict on the answer ``request_id``: ``score`` in [-1, 1] (-1 thumbs down, +1 up)."""
        event = feedback_event(
            self.service,
            request_id=request_id,
            prompt_version=prompt_version,
            score=score,
            labels={**self.labels, **(labels or {})},
            ts=ts,
        )
        return self.emitter.emit(event)
