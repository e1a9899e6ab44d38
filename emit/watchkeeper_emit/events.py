"""Builders for the event types of Watchkeeper's wire contract.

They return plain dicts (the JSON the agent reads) so a service needs no schema
library. The contract itself lives in the agent (``watchkeeper schema``); the emitter's
tests validate every builder's output against it. The builders check only what is
cheap and what would otherwise send the event to the agent's dead-letter topic.

>>> e = inference_event("checkout", "fraud-detector", 7, latency_ms=83.2, status="ok", ts=0)
>>> e["type"], e["service"], e["model_version"], owner_of(e)
('inference', 'checkout', '7', 'checkout')
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "EMBEDDING_MAX_DIMS",
    "EVENT_TYPES",
    "SAFETY_MAX_CATEGORIES",
    "feedback_event",
    "gpu_event",
    "inference_event",
    "llm_event",
    "owner_of",
    "retrieval_event",
]

#: event type -> the field whose value is the Kafka key (the series owner)
EVENT_TYPES: dict[str, str] = {
    "inference": "service",
    "llm": "service",
    "gpu": "node",
    "retrieval": "service",
    "feedback": "service",
}

EMBEDDING_MAX_DIMS = 1024
"""Longest ``embedding`` the agent accepts; a longer vector would be dead-lettered."""

SAFETY_MAX_CATEGORIES = 16
"""Most safety categories on one ``llm`` event (each a short name)."""

_CATEGORY_CHARS = 64
_NAME_CHARS = 256  # the contract's bound on names and ids
_EMBEDDING_MAX_ABS = 1e6
_EMBEDDING_DECIMALS = 5  # ~1e-5 is far below any drift a detector measures; keeps events ~3 KB for 384 dims


def owner_of(event: Mapping[str, Any]) -> str:
    """The Kafka key of an event: ``service`` (inference, llm) or ``node`` (gpu).

    Raises ``ValueError`` for an unknown type or a missing owner, so a malformed event
    is counted as dropped at the producer instead of dead-lettered by the agent.
    """
    field = EVENT_TYPES.get(event.get("type"))  # type: ignore[arg-type]
    if field is None:
        raise ValueError(f"unknown event type {event.get('type')!r} ({', '.join(EVENT_TYPES)})")
    owner = event.get(field)
    if not owner:
        raise ValueError(f"{event['type']} event without {field!r}")
    return str(owner)


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _unit(name: str, value: float, low: float = 0.0) -> float:
    value = float(value)
    if not math.isfinite(value) or not low <= value <= 1.0:
        raise ValueError(f"{name} must be a finite number in [{low:g}, 1], got {value!r}")
    return value


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _embedding(values: Sequence[float]) -> list[float]:
    """A bounded, finite, rounded copy of a vector (numpy arrays and lists alike; ~0.1 ms for 384 values)."""
    out = [round(x, _EMBEDDING_DECIMALS) for x in map(float, values)]
    if not 1 <= len(out) <= EMBEDDING_MAX_DIMS:
        raise ValueError(f"embedding must have 1..{EMBEDDING_MAX_DIMS} dimensions, got {len(out)}")
    if not all(-_EMBEDDING_MAX_ABS <= x <= _EMBEDDING_MAX_ABS for x in out):  # False for NaN and infinities too
        raise ValueError(f"embedding values must be finite and within +-{_EMBEDDING_MAX_ABS:g}")
    return out


def _request_id(value: Any) -> str:
    text = str(value)
    if not 1 <= len(text) <= _NAME_CHARS:
        raise ValueError(f"request_id must have 1..{_NAME_CHARS} characters, got {len(text)}")
    return text


def _safety(flagged: bool, categories: Sequence[str]) -> dict[str, Any]:
    names = sorted({str(c) for c in categories})
    if len(names) > SAFETY_MAX_CATEGORIES or any(not c or len(c) > _CATEGORY_CHARS for c in names):
        raise ValueError(
            f"safety categories: at most {SAFETY_MAX_CATEGORIES} names of 1..{_CATEGORY_CHARS} characters, got {names[:20]!r}"
        )
    return {"flagged": bool(flagged), "categories": names}


def _status(status: str) -> str:
    if status not in ("ok", "error"):
        raise ValueError(f"status must be 'ok' or 'error', got {status!r}")
    return status


def inference_event(
    service: str,
    model: str,
    model_version: str | int,
    *,
    latency_ms: float,
    status: str = "ok",
    features: Mapping[str, float | str] | None = None,
    prediction: float | str | None = None,
    labels: Mapping[str, str] | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """One prediction served (Kafka key: ``service``)."""
    event: dict[str, Any] = {
        "type": "inference",
        "ts": time.time() if ts is None else ts,
        "service": service,
        "model": model,
        "model_version": str(model_version),
        "latency_ms": _finite("latency_ms", latency_ms),
        "status": _status(status),
        "labels": dict(labels or {}),
    }
    if features:
        event["features"] = dict(features)
    if prediction is not None:
        event["prediction"] = prediction
    return event


def llm_event(
    service: str,
    model: str,
    *,
    prompt_version: str | int,
    tenant: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: float,
    status: str = "ok",
    cost_usd: float | None = None,
    request_id: str | None = None,
    flagged: bool | None = None,
    safety_categories: Sequence[str] = (),
    refusal: bool | None = None,
    eval_score: float | None = None,
    embedding: Sequence[float] | None = None,
    labels: Mapping[str, str] | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """One LLM request (Kafka key: ``service``).

    The optional fields describe the response: ``request_id`` joins it to its
    ``retrieval`` and ``feedback`` events; ``flagged`` and ``safety_categories`` are a
    safety classifier's verdict (sent as ``safety: {flagged, categories}``); ``refusal``
    says the model declined; ``eval_score`` is an evaluation in [0, 1] (groundedness);
    ``embedding`` is the response's embedding (at most :data:`EMBEDDING_MAX_DIMS`).
    """
    event: dict[str, Any] = {
        "type": "llm",
        "ts": time.time() if ts is None else ts,
        "service": service,
        "model": model,
        "prompt_version": str(prompt_version),
        "tenant": tenant,
        "prompt_tokens": int(prompt_tokens),
        "completion_tokens": int(completion_tokens),
        "latency_ms": _finite("latency_ms", latency_ms),
        "status": _status(status),
        "labels": dict(labels or {}),
    }
    if cost_usd is not None:
        event["cost_usd"] = _finite("cost_usd", cost_usd)
    if request_id is not None:
        event["request_id"] = _request_id(request_id)
    if flagged is not None or safety_categories:
        event["safety"] = _safety(bool(safety_categories) if flagged is None else flagged, safety_categories)
    if refusal is not None:
        event["refusal"] = bool(refusal)
    if eval_score is not None:
        event["eval_score"] = _unit("eval_score", eval_score)
    if embedding is not None:
        event["embedding"] = _embedding(embedding)
    return event


def retrieval_event(
    service: str,
    index: str,
    index_version: str | int,
    *,
    latency_ms: float,
    k: int,
    hits: int,
    top_score: float | None = None,
    mean_score: float | None = None,
    status: str = "ok",
    request_id: str | None = None,
    embedding: Sequence[float] | None = None,
    labels: Mapping[str, str] | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """One vector-index lookup (Kafka key: ``service``).

    ``k`` results were asked for and ``hits`` came back (0 is the empty-hit case the
    agent watches); ``top_score`` and ``mean_score`` are the similarities of the best
    and of all hits (omitted when there are none); ``embedding`` is the query's vector
    (at most :data:`EMBEDDING_MAX_DIMS`), for drift against what the index covers.
    """
    k, hits = _count("k", k), _count("hits", hits)
    if k < 1 or hits > k:
        raise ValueError(f"need 1 <= k and hits <= k, got k={k}, hits={hits}")
    event: dict[str, Any] = {
        "type": "retrieval",
        "ts": time.time() if ts is None else ts,
        "service": service,
        "index": index,
        "index_version": str(index_version),
        "latency_ms": _finite("latency_ms", latency_ms),
        "k": k,
        "hits": hits,
        "status": _status(status),
        "labels": dict(labels or {}),
    }
    for name, value in (("top_score", top_score), ("mean_score", mean_score)):
        if value is not None:
            value = float(value)
            if not math.isfinite(value) or abs(value) > _EMBEDDING_MAX_ABS:
                raise ValueError(f"{name} must be finite and within +-{_EMBEDDING_MAX_ABS:g}, got {value!r}")
            event[name] = value
    if request_id is not None:
        event["request_id"] = _request_id(request_id)
    if embedding is not None:
        event["embedding"] = _embedding(embedding)
    return event


def feedback_event(
    service: str,
    *,
    request_id: str,
    prompt_version: str | int,
    score: float,
    labels: Mapping[str, str] | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """A user's verdict on one answer (Kafka key: ``service``): ``score`` in [-1, 1] (thumbs down/up)."""
    if not request_id:
        raise ValueError("feedback needs the request_id of the answer it rates")
    return {
        "type": "feedback",
        "ts": time.time() if ts is None else ts,
        "service": service,
        "request_id": _request_id(request_id),
        "prompt_version": str(prompt_version),
        "score": _unit("score", score, low=-1.0),
        "labels": dict(labels or {}),
    }


def gpu_event(
    node: str,
    gpu: str | int,
    *,
    util_pct: float,
    mem_used_bytes: int,
    mem_total_bytes: int,
    temp_c: float,
    power_w: float,
    xid_errors: int | None = None,
    pod: str | None = None,
    labels: Mapping[str, str] | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """One GPU sample (Kafka key: ``node``)."""
    return {
        "type": "gpu",
        "ts": time.time() if ts is None else ts,
        "node": node,
        "gpu": str(gpu),
        "pod": pod,
        "util_pct": min(100.0, _finite("util_pct", util_pct)),
        "mem_used_bytes": int(mem_used_bytes),
        "mem_total_bytes": int(mem_total_bytes),
        "temp_c": float(temp_c),
        "power_w": _finite("power_w", power_w),
        "xid_errors": xid_errors,
        "labels": dict(labels or {}),
    }
