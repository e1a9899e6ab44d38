"""The nouns of the data path: Event -> Finding -> Alert.

Events are pydantic models because they are the edge: they arrive as untrusted JSON
from Kafka and their JSON Schema is the published wire contract (`watchkeeper schema`).
Everything after parsing is a frozen dataclass: cheap, immutable, and owned by no one.

Wire-contract rules kept here so they stay in one place:

* fields may be added, never renamed; unknown fields are ignored, so producers on a
  newer contract never land in the dead-letter topic;
* ``ts`` is RFC 3339 or epoch seconds and is normalised to epoch seconds (float);
* numbers must be finite: NaN and infinities are rejected, never propagated;
* numbers are bounded: every integer and every number's magnitude is at most
  ``MAX_NUMBER`` (2**53), so converting an integer to float is exact and arithmetic on
  a few of them (sums, squares, ratios) stays finite. A producer's 10**400 is an invalid
  event (dead-lettered), never an exception somewhere downstream.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, Literal, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

__all__ = [
    "Alert",
    "AlertState",
    "EVENT_ADAPTER",
    "Event",
    "FeedbackEvent",
    "Finding",
    "GpuEvent",
    "InferenceEvent",
    "LlmEvent",
    "MAX_NUMBER",
    "RetrievalEvent",
    "SOURCES",
    "Safety",
    "Score",
    "fingerprint",
]

SOURCES: tuple[str, ...] = ("inference", "llm", "gpu", "retrieval", "feedback")

#: the largest magnitude any number on the wire may have: 2**53, the largest integer a
#: float (and a JSON reader in any language) holds exactly
MAX_NUMBER = 2**53
_COUNT = Annotated[int, Field(ge=0, le=MAX_NUMBER)]
_NUMBER = Annotated[float, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)]
_AMOUNT = Annotated[float, Field(ge=0, le=MAX_NUMBER)]

_NAME = Annotated[str, Field(min_length=1, max_length=256)]
_LABELS = Annotated[dict[str, Annotated[str, Field(max_length=1024)]], Field(max_length=64)]
_MAX_INT = MAX_NUMBER  # integers beyond this lose precision as JSON numbers in most consumers
_MAX_DIM = 1024  # embedding length: enough for common sentence encoders, bounded per event
_EMBEDDING = Annotated[
    tuple[Annotated[float, Field(ge=-1e6, le=1e6)], ...],
    Field(min_length=1, max_length=_MAX_DIM, description=f"A finite float vector of at most {_MAX_DIM} values."),
]


def _parse_ts(value: Any) -> float:
    """Accept epoch seconds or RFC 3339; reject anything without a timezone."""
    if value.__class__ is float and 0.0 <= value < math.inf:
        return value  # the common case, once per event: no further checks needed
    if isinstance(value, bool):
        raise ValueError("ts must be epoch seconds or an RFC 3339 string, not a boolean")
    if isinstance(value, int) and not -MAX_NUMBER <= value <= MAX_NUMBER:
        raise ValueError(f"ts must be at most {MAX_NUMBER} epoch seconds")  # float() would overflow
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"ts {value!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise ValueError(f"ts {value!r} has no timezone (RFC 3339 needs one, e.g. 'Z')")
        ts = parsed.timestamp()
    else:
        raise ValueError("ts must be epoch seconds or an RFC 3339 string")
    if not math.isfinite(ts) or not 0 <= ts <= MAX_NUMBER:
        raise ValueError(f"ts must be a finite, non-negative epoch time of at most {MAX_NUMBER} s")
    return ts


def _str_or_int(value: Any) -> Any:
    """Versions and GPU ids are identifiers; producers often send them as numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class _WireEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False, strict=False)

    ts: float = Field(description="Event time: RFC 3339 with timezone, or epoch seconds.")
    labels: _LABELS = Field(default_factory=dict, description="Free string map.")

    _ts = field_validator("ts", mode="before")(_parse_ts)


class InferenceEvent(_WireEvent):
    """One prediction served by an inference service (Kafka key: ``service``)."""

    type: Literal["inference"]
    service: _NAME
    model: _NAME
    model_version: _NAME
    latency_ms: _AMOUNT
    status: Literal["ok", "error"]
    features: Annotated[dict[str, _NUMBER | str], Field(max_length=512)] = Field(
        default_factory=dict, description=f"Feature values: finite numbers of magnitude <= {MAX_NUMBER}, or strings."
    )
    prediction: _NUMBER | str | None = Field(default=None, description=f"A finite number of magnitude <= {MAX_NUMBER}, or a string.")

    _version = field_validator("model_version", mode="before")(_str_or_int)

    @property
    def owner(self) -> str:
        return self.service


class Safety(BaseModel):
    """A safety classifier's verdict on one response."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)

    flagged: bool
    categories: Annotated[tuple[Annotated[str, Field(min_length=1, max_length=64)], ...], Field(max_length=16)] = ()


class LlmEvent(_WireEvent):
    """One LLM request (Kafka key: ``service``)."""

    type: Literal["llm"]
    service: _NAME
    model: _NAME
    prompt_version: _NAME
    tenant: _NAME
    prompt_tokens: _COUNT
    completion_tokens: _COUNT
    latency_ms: _AMOUNT
    status: Literal["ok", "error"]
    cost_usd: _AMOUNT | None = None
    request_id: _NAME | None = Field(default=None, description="Joins retrieval, llm and feedback events of one request.")
    safety: Safety | None = Field(default=None, description="The safety classifier's verdict on the response.")
    refusal: bool | None = Field(default=None, description="The model declined to answer.")
    eval_score: float | None = Field(default=None, ge=0, le=1, description="An evaluation score (e.g. groundedness), 1 best.")
    embedding: _EMBEDDING | None = Field(default=None, description="The response's embedding.")

    _version = field_validator("prompt_version", mode="before")(_str_or_int)

    @property
    def owner(self) -> str:
        return self.service

    @property
    def total_tokens(self) -> int:
        """Derived: prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def flagged(self) -> float | None:
        """Derived: 1.0 when the safety classifier flagged the response, 0.0 when not, None unchecked."""
        return None if self.safety is None else float(self.safety.flagged)

    @property
    def refused(self) -> float | None:
        """Derived: ``refusal`` as 1.0/0.0 for rate detectors, None when not reported."""
        return None if self.refusal is None else float(self.refusal)


class GpuEvent(_WireEvent):
    """One GPU sample (Kafka key: ``node``)."""

    type: Literal["gpu"]
    node: _NAME
    gpu: _NAME = Field(description="GPU index or UUID.")
    pod: str | None = None
    util_pct: float = Field(ge=0, le=100)
    mem_used_bytes: _COUNT
    mem_total_bytes: Annotated[int, Field(gt=0, le=MAX_NUMBER)]
    temp_c: _NUMBER
    power_w: _AMOUNT
    xid_errors: _COUNT | None = None

    _gpu = field_validator("gpu", mode="before")(_str_or_int)

    @property
    def owner(self) -> str:
        return self.node

    @property
    def mem_used_ratio(self) -> float:
        """Derived: used over total frame-buffer memory, in [0, 1] for sane samples."""
        return self.mem_used_bytes / self.mem_total_bytes


class RetrievalEvent(_WireEvent):
    """One vector-index lookup of a RAG service (Kafka key: ``service``)."""

    type: Literal["retrieval"]
    service: _NAME
    index: _NAME = Field(description="The index (collection) name.")
    index_version: _NAME
    latency_ms: _AMOUNT
    k: int = Field(ge=1, le=_MAX_INT, description="Hits asked for.")
    hits: int = Field(ge=0, le=_MAX_INT, description="Hits returned (0: nothing found).")
    top_score: float | None = Field(default=None, ge=-1e6, le=1e6, description="Best hit's similarity; null without hits.")
    mean_score: float | None = Field(default=None, ge=-1e6, le=1e6, description="Mean similarity of the hits.")
    status: Literal["ok", "error"]
    request_id: _NAME | None = None
    embedding: _EMBEDDING | None = Field(default=None, description="The query's embedding.")

    _version = field_validator("index_version", mode="before")(_str_or_int)

    @property
    def owner(self) -> str:
        return self.service

    @property
    def empty(self) -> float:
        """Derived: 1.0 when the lookup returned no hits, for rate detectors."""
        return 1.0 if self.hits == 0 else 0.0


class FeedbackEvent(_WireEvent):
    """A user's rating of one answer (Kafka key: ``service``)."""

    type: Literal["feedback"]
    service: _NAME
    request_id: _NAME
    prompt_version: _NAME
    score: float = Field(ge=-1, le=1, description="-1 (thumbs down) to 1 (thumbs up).")

    _version = field_validator("prompt_version", mode="before")(_str_or_int)

    @property
    def owner(self) -> str:
        return self.service


Event = Annotated[Union[InferenceEvent, LlmEvent, GpuEvent, RetrievalEvent, FeedbackEvent], Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[InferenceEvent | LlmEvent | GpuEvent | RetrievalEvent | FeedbackEvent] = TypeAdapter(Event)


class Score(NamedTuple):
    """What a detector says about one observation: a score in [0, 1], a verdict, and why.

    A named tuple rather than a frozen dataclass: every event makes one per matching
    rule, and a tuple is built about three times faster (the hot path of the agent).
    """

    score: float
    active: bool
    value: float
    evidence: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict on one series at one event time."""

    rule_id: str
    series: tuple[tuple[str, str], ...]
    ts: float
    score: Score


class AlertState(enum.Enum):
    """Prometheus' alert states; INACTIVE is never sent, RESOLVED is sent once."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Alert:
    """A snapshot of one (rule, series) alert, as published and sent to Alertmanager.

    Times are event times (epoch seconds): ``active_at`` is when the condition first
    held, ``fired_at`` when ``for`` elapsed, ``resolved_at`` when ``keep_firing_for``
    of quiet ended.
    """

    fingerprint: str
    rule_id: str
    state: AlertState
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    active_at: float
    value: float
    fired_at: float | None = None
    resolved_at: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    series: tuple[str, ...] = ()
    #: event time this snapshot was taken at, and of its series' newest event (None: not
    #: stamped); the remediation side's event clock and traffic signal (actions/verify.py)
    at: float | None = None
    last_event_at: float | None = None

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as published on the alerts topic (non-finite numbers become null)."""
        return {
            "fingerprint": self.fingerprint,
            "rule_id": self.rule_id,
            "state": self.state.value,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "active_at": self.active_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "value": _finite_or_none(self.value),
            "evidence": {k: _finite_or_none(v) for k, v in self.evidence.items()},
            "series": list(self.series),
            **({"at": self.at} if self.at is not None else {}),
            **({"last_event_at": self.last_event_at} if self.last_event_at is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Alert":
        value = data.get("value")
        return cls(
            fingerprint=str(data["fingerprint"]),
            rule_id=str(data["rule_id"]),
            state=AlertState(data["state"]),
            labels={str(k): str(v) for k, v in data["labels"].items()},
            annotations={str(k): str(v) for k, v in data.get("annotations", {}).items()},
            active_at=float(data["active_at"]),
            fired_at=None if data.get("fired_at") is None else float(data["fired_at"]),
            resolved_at=None if data.get("resolved_at") is None else float(data["resolved_at"]),
            value=math.nan if value is None else float(value),
            evidence=dict(data.get("evidence") or {}),
            series=tuple(str(v) for v in data.get("series") or ()),
            at=_finite_or_none_float(data.get("at")),
            last_event_at=_finite_or_none_float(data.get("last_event_at")),
        )


def _finite_or_none_float(value: Any) -> float | None:
    """An optional event time from JSON: a finite number, else None (never a crash on bad input)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id for a label set: the same series of the same rule always maps here."""
    digest = hashlib.sha256()
    for key in sorted(labels):
        digest.update(key.encode())
        digest.update(b"\x00")
        digest.update(labels[key].encode())
        digest.update(b"\x01")
    return digest.hexdigest()[:16]
