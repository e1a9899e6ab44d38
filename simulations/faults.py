"""What goes wrong: application faults change the events, infrastructure faults the runtime.

An application fault is active on the half-open window ``[start_s, end_s)`` of scenario
time and only for events whose fields match ``where`` (e.g. ``{service: checkout}``);
``transform`` returns the event(s) that the simulated service emits instead (a token
storm multiplies one tenant's requests, so it may return several). Each fault also
names the ``signal`` a plot of it should show: (source, field, aggregate).

Infrastructure faults (``agent_kill``, ``broker_restart``, ``alertmanager_down``,
``mlflow_down``, ``kube_api_errors``) do not touch events; the runner acts them out when
the paced traffic reaches ``start_s`` and undoes them at ``end_s``.

>>> f = LatencySpike(where={"service": "a"}, start_s=10, duration_s=5, factor=4)
>>> e = {"service": "a", "latency_ms": 50.0}
>>> f.applies(e, 12.0), f.transform(e, 12.0, random.Random(0))[0]["latency_ms"]
(True, 200.0)
>>> f.applies(e, 15.0)
False
"""

from __future__ import annotations

import functools
import math
import random
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["APP_FAULTS", "INFRA_FAULTS", "Fault", "FaultBase"]

Event = dict[str, Any]


class FaultBase(BaseModel):
    """Common fields: an id (default: the kind), a selector, and a window in scenario seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    where: dict[str, str] = Field(default_factory=dict)
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)

    signal: ClassVar[tuple[str, str, str]] = ("inference", "latency_ms", "p99")

    def model_post_init(self, context: Any) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.kind)  # type: ignore[attr-defined]  # every subclass has one

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active(self, offset_s: float) -> bool:
        return self.start_s <= offset_s < self.end_s

    def progress(self, offset_s: float) -> float:
        """0 at the start of the window, 1 at its end."""
        return min(1.0, max(0.0, (offset_s - self.start_s) / self.duration_s))

    def matches(self, event: Event) -> bool:
        return all(str(event.get(k, (event.get("labels") or {}).get(k))) == v for k, v in self.where.items())

    def applies(self, event: Event, offset_s: float) -> bool:
        return self.active(offset_s) and self.matches(event)

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        return [event]


# --- inference ----------------------------------------------------------------------------
class LatencySpike(FaultBase):
    """Latency multiplied by ``factor`` for the whole window."""

    kind: Literal["latency_spike"] = "latency_spike"
    factor: float = Field(10.0, gt=0)

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        event["latency_ms"] = round(event["latency_ms"] * self.factor, 2)
        return [event]


class LatencyCreep(FaultBase):
    """Latency rises linearly to ``factor`` times normal at the end of the window (a slow leak, a filling queue)."""

    kind: Literal["latency_creep"] = "latency_creep"
    factor: float = Field(8.0, gt=1)

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        event["latency_ms"] = round(event["latency_ms"] * (1.0 + (self.factor - 1.0) * self.progress(offset_s)), 2)
        return [event]


class ErrorBurst(FaultBase):
    """Requests fail with probability ``error_ratio``."""

    kind: Literal["error_burst"] = "error_burst"
    error_ratio: float = Field(0.3, gt=0, le=1)
    signal: ClassVar[tuple[str, str, str]] = ("inference", "status", "error_ratio")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        if rng.random() < self.error_ratio:
            event["status"] = "error"
        return [event]


class FeatureShift(FaultBase):
    """A numeric feature's values multiplied by ``factor`` (upstream unit change, a new market)."""

    kind: Literal["feature_shift"] = "feature_shift"
    feature: str = "amount"
    factor: float = Field(3.0, gt=0)

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        value = event.get("features", {}).get(self.feature)
        if isinstance(value, (int, float)):
            event["features"][self.feature] = round(value * self.factor, 4)
        return [event]


class CategoryMix(FaultBase):
    """A categorical feature drawn from ``categories`` (weights) instead of its usual mix."""

    kind: Literal["category_mix"] = "category_mix"
    feature: str = "country"
    categories: dict[str, float] = Field(min_length=1)

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        if self.feature in event.get("features", {}):
            names, weights = list(self.categories), list(self.categories.values())
            event["features"][self.feature] = rng.choices(names, weights)[0]
        return [event]


class PredictionDrift(FaultBase):
    """Predictions moved by ``shift`` (clipped to [0, 1]): the model sees a world it was not trained on."""

    kind: Literal["prediction_drift"] = "prediction_drift"
    shift: float = Field(0.25, ge=-1, le=1)
    signal: ClassVar[tuple[str, str, str]] = ("inference", "prediction", "mean")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        if isinstance(event.get("prediction"), (int, float)):
            event["prediction"] = round(min(1.0, max(0.0, event["prediction"] + self.shift)), 4)
        return [event]


class BadDeploy(FaultBase):
    """A new ``model_version`` goes live and brings errors and latency; the window ends with the rollback."""

    kind: Literal["bad_deploy"] = "bad_deploy"
    to_version: str
    error_ratio: float = Field(0.2, ge=0, le=1)
    latency_factor: float = Field(4.0, gt=0)

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        event["model_version"] = self.to_version
        event["latency_ms"] = round(event["latency_ms"] * self.latency_factor, 2)
        if rng.random() < self.error_ratio:
            event["status"] = "error"
        return [event]


# --- gpu ----------------------------------------------------------------------------------
class GpuMemoryLeak(FaultBase):
    """Used frame-buffer memory grows by ``ratio_per_min`` of the total each minute (capped at 99.5 %)."""

    kind: Literal["gpu_memory_leak"] = "gpu_memory_leak"
    ratio_per_min: float = Field(0.01, gt=0, le=1)
    signal: ClassVar[tuple[str, str, str]] = ("gpu", "mem_used_ratio", "max")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        total = event["mem_total_bytes"]
        grown = event["mem_used_bytes"] + total * self.ratio_per_min * (offset_s - self.start_s) / 60.0
        event["mem_used_bytes"] = int(min(grown, total * 0.995))
        return [event]


class XidError(FaultBase):
    """The driver reports XID ``code`` (79: fallen off the bus; 48: double-bit ECC) in the window."""

    kind: Literal["xid_error"] = "xid_error"
    code: int = Field(79, gt=0)
    signal: ClassVar[tuple[str, str, str]] = ("gpu", "xid_errors", "max")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        event["xid_errors"] = self.code
        return [event]


# --- llm ----------------------------------------------------------------------------------
class TokenStorm(FaultBase):
    """One tenant's requests multiplied by ``factor`` (a retry loop, a leaked key): select it with ``where``."""

    kind: Literal["token_storm"] = "token_storm"
    factor: float = Field(10.0, ge=1)
    signal: ClassVar[tuple[str, str, str]] = ("llm", "total_tokens", "sum")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        copies = int(self.factor) + (1 if rng.random() < self.factor - int(self.factor) else 0)
        out = [event]
        for _ in range(1, copies):
            twin = dict(event)
            twin["ts"] = round(event["ts"] + rng.random() * 0.5, 3)
            out.append(twin)
        return out


class RunawayPrompt(FaultBase):
    """A new ``prompt_version`` whose answers are ``factor`` times longer; the window ends with the prompt rollback."""

    kind: Literal["runaway_prompt"] = "runaway_prompt"
    to_version: str
    factor: float = Field(2.0, gt=1)
    signal: ClassVar[tuple[str, str, str]] = ("llm", "completion_tokens", "mean")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        event["prompt_version"] = self.to_version
        event["completion_tokens"] = int(event["completion_tokens"] * self.factor)
        event["latency_ms"] = round(event["latency_ms"] * self.factor, 1)
        if "cost_usd" in event:
            event["cost_usd"] = round(event["cost_usd"] * self.factor, 6)
        return [event]


# --- rag ----------------------------------------------------------------------------------
def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 4) for x in vector]


@functools.lru_cache(maxsize=64)
def _new_topics(seed: str, dims: int, topics: int) -> tuple[list[float], ...]:
    """Unit centroids of a new user population (seeded: the same scenario gives the same population)."""
    rng = random.Random(f"{seed}/{dims}")
    return tuple(_unit([rng.gauss(0, 1) for _ in range(dims)]) for _ in range(topics))


class BadIndex(FaultBase):
    """A new ``index_version`` goes live built wrong: ``empty_ratio`` of lookups find nothing, the rest score
    ``score_factor`` times lower; the window ends with the index rollback."""

    kind: Literal["bad_index"] = "bad_index"
    to_version: str
    empty_ratio: float = Field(0.5, ge=0, le=1)
    score_factor: float = Field(0.5, gt=0, le=1)
    signal: ClassVar[tuple[str, str, str]] = ("retrieval", "empty", "mean")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        if event.get("type") != "retrieval":
            return [event]
        event["index_version"] = self.to_version
        if rng.random() < self.empty_ratio:
            event["hits"] = 0
            event.pop("top_score", None)
            event.pop("mean_score", None)
        else:
            for name in ("top_score", "mean_score"):
                if isinstance(event.get(name), (int, float)):
                    event[name] = round(event[name] * self.score_factor, 4)
        return [event]


class UnsafePrompt(FaultBase):
    """A new ``prompt_version`` whose answers are flagged by the safety check ``flagged_ratio`` of the time
    (its answers' feedback carries it too); the window ends with the prompt rollback."""

    kind: Literal["unsafe_prompt"] = "unsafe_prompt"
    to_version: str
    flagged_ratio: float = Field(0.08, gt=0, le=1)
    signal: ClassVar[tuple[str, str, str]] = ("llm", "flagged", "mean")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        if event.get("type") == "llm":
            event["prompt_version"] = self.to_version
            if rng.random() < self.flagged_ratio:
                event["safety"] = {"flagged": True, "categories": ["toxicity"]}
        elif event.get("type") == "feedback":
            event["prompt_version"] = self.to_version
        return [event]


class QueryDrift(FaultBase):
    """A new user population: ``share`` of the queries come from ``topics`` new clusters of the embedding
    space (seeded by the fault id), and the index covers them ``score_factor`` times less well."""

    kind: Literal["query_drift"] = "query_drift"
    share: float = Field(0.6, gt=0, le=1)
    topics: int = Field(3, ge=1, le=64)
    spread: float = Field(0.35, ge=0, le=5)
    score_factor: float = Field(1.0, gt=0, le=1)
    signal: ClassVar[tuple[str, str, str]] = ("retrieval", "top_score", "mean")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        vector = event.get("embedding")
        if event.get("type") != "retrieval" or not isinstance(vector, list) or rng.random() >= self.share:
            return [event]
        dims = len(vector)
        centroid = _new_topics(self.id, dims, self.topics)[rng.randrange(self.topics)]
        event["embedding"] = _unit([c + rng.gauss(0, self.spread / math.sqrt(dims)) for c in centroid])
        for name in ("top_score", "mean_score"):
            if isinstance(event.get(name), (int, float)):
                event[name] = round(event[name] * self.score_factor, 4)
        return [event]


class ModelChange(FaultBase):
    """The LLM behind a service changes to ``to_model``, shipped as prompt version ``to_version`` (the
    prompt's configuration names the model), and users like its answers less: feedback is +1 with
    probability ``thumbs_up_ratio``. Feedback events carry the version, and the model in ``labels.model``."""

    kind: Literal["model_change"] = "model_change"
    to_model: str
    to_version: str
    thumbs_up_ratio: float = Field(0.4, ge=0, le=1)
    signal: ClassVar[tuple[str, str, str]] = ("feedback", "score", "mean")

    def transform(self, event: Event, offset_s: float, rng: random.Random) -> list[Event]:
        if event.get("type") == "llm":
            event["model"] = self.to_model
            event["prompt_version"] = self.to_version
        elif event.get("type") == "feedback":
            event["prompt_version"] = self.to_version
            event["labels"] = {**(event.get("labels") or {}), "model": self.to_model}
            event["score"] = 1.0 if rng.random() < self.thumbs_up_ratio else -1.0
        return [event]


# --- infrastructure -----------------------------------------------------------------------
class AgentKill(FaultBase):
    """SIGKILL the agent at ``start_s``; a new one starts ``duration_s`` scenario seconds later."""

    kind: Literal["agent_kill"] = "agent_kill"


class BrokerRestart(FaultBase):
    """Stop the broker at ``start_s`` and start it again after ``duration_s`` (Tansu: topics and offsets are lost)."""

    kind: Literal["broker_restart"] = "broker_restart"


class AlertmanagerDown(FaultBase):
    """Alertmanager stopped from ``start_s`` for ``duration_s``: pages must arrive late, not never."""

    kind: Literal["alertmanager_down"] = "alertmanager_down"


class MlflowDown(FaultBase):
    """The MLflow server answers ``status`` (503) to the agent from ``start_s`` for ``duration_s`` (needs --mlflow-uri)."""

    kind: Literal["mlflow_down"] = "mlflow_down"
    status: int = Field(503, ge=400, le=599)
    methods: list[str] | None = Field(None, description="fail only these HTTP methods (default: all)")
    requests: int | None = Field(None, ge=1, description="fail only this many requests, then pass (default: all in the window)")


class KubeApiErrors(FaultBase):
    """The Kubernetes API answers ``status`` (409 conflict or 500) to the agent for the window (needs --kubeconfig)."""

    kind: Literal["kube_api_errors"] = "kube_api_errors"
    status: Union[int, list[int]] = Field(500, description="a status, or statuses answered in order (then requests pass)")
    methods: list[str] | None = Field(None, description="fail only these HTTP methods, e.g. [PATCH, PUT] for writes")
    requests: int | None = Field(None, ge=1, description="fail only this many requests, then pass (default: all in the window)")


Fault = Annotated[
    Union[
        LatencySpike, LatencyCreep, ErrorBurst, FeatureShift, CategoryMix, PredictionDrift, BadDeploy,
        GpuMemoryLeak, XidError, TokenStorm, RunawayPrompt, AgentKill, BrokerRestart, AlertmanagerDown, MlflowDown,
        KubeApiErrors, BadIndex, UnsafePrompt, QueryDrift, ModelChange,
    ],
    Field(discriminator="kind"),
]

INFRA_FAULTS = frozenset({"agent_kill", "broker_restart", "alertmanager_down", "mlflow_down", "kube_api_errors"})
APP_FAULTS = frozenset(
    {
        "latency_spike", "latency_creep", "error_burst", "feature_shift", "category_mix", "prediction_drift",
        "bad_deploy", "gpu_memory_leak", "xid_error", "token_storm", "runaway_prompt",
        "bad_index", "unsafe_prompt", "query_drift", "model_change",
    }
)


def signal_of(fault: FaultBase) -> tuple[str, str, str]:
    """(source, field, aggregate) to plot for a fault; feature faults plot their feature."""
    if isinstance(fault, FeatureShift):
        return ("inference", f"features.{fault.feature}", "mean")
    if isinstance(fault, CategoryMix):
        top = max(fault.categories, key=fault.categories.__getitem__)
        return ("inference", f"features.{fault.feature}={top}", "share")
    return fault.signal
