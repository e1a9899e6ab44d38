"""Builders for the three event types of Watchkeeper's wire contract.

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
from collections.abc import Mapping
from typing import Any

__all__ = ["EVENT_TYPES", "gpu_event", "inference_event", "llm_event", "owner_of"]

#: event type -> the field whose value is the Kafka key (the series owner)
EVENT_TYPES: dict[str, str] = {"inference": "service", "llm": "service", "gpu": "node"}


def owner_of(event: Mapping[str, Any]) -> str:
    """The Kafka key of an event: ``service`` (inference, llm) or ``node`` (gpu).

    Raises ``ValueError`` for an unknown type or a missing owner, so a malformed event
    is counted as dropped at the producer instead of dead-lettered by the agent.
    """
    field = EVENT_TYPES.get(event.get("type"))  # type: ignore[arg-type]
    if field is None:
        raise ValueError(f"unknown event type {event.get('type')!r} (inference, llm or gpu)")
    owner = event.get(field)
    if not owner:
        raise ValueError(f"{event['type']} event without {field!r}")
    return str(owner)


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


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
    labels: Mapping[str, str] | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """One LLM request (Kafka key: ``service``)."""
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
    return event


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
