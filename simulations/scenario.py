"""The scenario file: a simulated fleet, a steady state, faults on a timeline, expectations.

A scenario is YAML validated by pydantic, so a typo is an error that names the field
(unknown keys are refused: a misspelt expectation must never pass silently). Times are
scenario seconds from the start of the simulated traffic; the runner maps them to event
time (``ts`` of the events) and checks expectations there, so a twenty-minute scenario
replayed in twenty wall seconds measures the same detection delays as a live one.

>>> s = Scenario.model_validate({
...     "name": "spike", "duration_s": 600,
...     "fleet": {"inference": [{"service": "checkout", "model": "fraud"}]},
...     "faults": [{"kind": "latency_spike", "where": {"service": "checkout"}, "start_s": 300, "duration_s": 60}],
...     "expect": [{"alert": {"name": "InferenceHighP99Latency", "labels": {"service": "checkout"},
...                           "fires_within_s": 90, "resolves_within_s": 120}}]})
>>> s.faults[0].id, s.faults[0].end_s, s.steady_end_s
('latency_spike', 360.0, 300.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.errors import WatchkeeperError

from .faults import APP_FAULTS, INFRA_FAULTS, Fault

__all__ = [
    "AlertExpectation",
    "ActionExpectation",
    "Expectation",
    "Fleet",
    "GpuNode",
    "InferenceService",
    "LlmService",
    "QueryTopics",
    "RagService",
    "Scenario",
    "ScenarioError",
    "load_scenario",
]


class ScenarioError(WatchkeeperError):
    """A scenario file that cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumericFeature(_Strict):
    """A numeric input feature: lognormal (``mu``, ``sigma`` of the log) or normal (``mean``, ``sd``)."""

    dist: Literal["lognormal", "normal"] = "lognormal"
    mu: float = 3.0
    sigma: float = 1.0
    mean: float = 0.0
    sd: float = 1.0


class CategoricalFeature(_Strict):
    """A categorical input feature: category -> weight (normalised)."""

    categories: dict[str, float] = Field(min_length=1)


class InferenceService(_Strict):
    """One model behind one service (``inference`` events)."""

    service: str
    model: str
    model_version: str = "1"
    rate_per_s: float = Field(10.0, gt=0, le=2000)
    latency_ms: float = Field(80.0, gt=0)
    latency_jitter_ms: float = Field(20.0, ge=0)
    error_ratio: float = Field(0.0005, ge=0, le=1)
    features: dict[str, Union[CategoricalFeature, NumericFeature]] = Field(
        default_factory=lambda: {"amount": NumericFeature()}
    )
    prediction_mean: float = Field(0.3, ge=0, le=1)
    prediction_sd: float = Field(0.1, ge=0)


class LlmTrace(_Strict):
    """Replay a real request trace (Azure LLM inference 2023: TIMESTAMP, ContextTokens, GeneratedTokens)."""

    path: str = "../shared/data/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"
    speedup: float = Field(1.0, gt=0, description="trace seconds per scenario second")


class LlmService(_Strict):
    """An LLM service (``llm`` events); tenants share its traffic by weight."""

    service: str
    model: str = "gpt-4o"
    prompt_version: str = "1"
    tenants: dict[str, float] = Field(default_factory=lambda: {"acme": 1.0}, min_length=1)
    rate_per_s: float = Field(5.0, gt=0, le=2000)
    prompt_tokens: float = Field(800.0, gt=0)
    completion_tokens: float = Field(250.0, gt=0)
    latency_ms: float = Field(2000.0, gt=0)
    error_ratio: float = Field(0.002, ge=0, le=1)
    trace: LlmTrace | None = None


class QueryTopics(_Strict):
    """The query population of a RAG service: ``topics`` clusters in a ``dims``-dimensional embedding space.

    Each query embedding is a unit vector: its topic's centroid (a seeded random unit
    vector) plus Gaussian noise of ``spread`` per dimension, normalised, the shape sentence
    embeddings of a fixed user population have. Topic ``i`` is drawn with weight
    ``weights[i]`` (default: equal).
    """

    dims: int = Field(32, ge=2, le=1024)
    topics: int = Field(8, ge=1, le=256)
    spread: float = Field(0.35, ge=0, le=5)
    weights: list[float] | None = None


class RagService(_Strict):
    """A RAG service: per request a ``retrieval`` event, an ``llm`` event and, for ``feedback_ratio`` of them, a ``feedback``.

    Scores are cosine similarities: ``top_score`` ~ N(mean, sd) clipped to [0, 1], the mean
    score a fraction ``mean_score_ratio`` of it; ``empty_ratio`` of lookups find nothing.
    Feedback arrives ``feedback_delay_s`` after the answer, +1 with probability
    ``thumbs_up_ratio``, else -1.
    """

    service: str
    index: str = "docs"
    index_version: str = "1"
    model: str = "gpt-4o"
    prompt_version: str = "1"
    tenants: dict[str, float] = Field(default_factory=lambda: {"acme": 1.0}, min_length=1)
    rate_per_s: float = Field(2.0, gt=0, le=500)
    k: int = Field(5, ge=1, le=100)
    top_score: float = Field(0.78, ge=0, le=1)
    top_score_sd: float = Field(0.06, ge=0)
    mean_score_ratio: float = Field(0.8, gt=0, le=1)
    empty_ratio: float = Field(0.01, ge=0, le=1)
    retrieval_latency_ms: float = Field(12.0, gt=0)
    prompt_tokens: float = Field(1200.0, gt=0)
    completion_tokens: float = Field(180.0, gt=0)
    latency_ms: float = Field(1500.0, gt=0)
    error_ratio: float = Field(0.001, ge=0, le=1)
    flagged_ratio: float = Field(0.002, ge=0, le=1)
    refusal_ratio: float = Field(0.01, ge=0, le=1)
    groundedness: float = Field(0.85, ge=0, le=1)
    feedback_ratio: float = Field(0.05, ge=0, le=1)
    feedback_delay_s: float = Field(20.0, ge=0)
    thumbs_up_ratio: float = Field(0.8, ge=0, le=1)
    queries: QueryTopics | None = Field(None, description="send query embeddings (for embedding_drift)")
    response_embeddings: bool = False


class GpuNode(_Strict):
    """A node's GPUs sampled every ``interval_s`` (``gpu`` events)."""

    node: str
    gpus: int = Field(1, ge=1, le=16)
    pod: str | None = None
    interval_s: float = Field(10.0, gt=0)
    mem_total_gb: float = Field(80.0, gt=0)
    mem_used_ratio: float = Field(0.55, ge=0, le=1)
    util_pct: float = Field(70.0, ge=0, le=100)
    temp_c: float = 65.0
    power_w: float = Field(400.0, ge=0)


class Fleet(_Strict):
    inference: list[InferenceService] = Field(default_factory=list)
    llm: list[LlmService] = Field(default_factory=list)
    gpu: list[GpuNode] = Field(default_factory=list)
    rag: list[RagService] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Fleet:
        if not (self.inference or self.llm or self.gpu or self.rag):
            raise ValueError("the fleet needs at least one inference service, LLM service, RAG service or GPU node")
        return self


class SteadyState(_Strict):
    """The quiet start: how long (default: until the first fault) and what must not happen."""

    duration_s: float | None = Field(None, ge=0)
    forbid: list[Literal["alerts", "actions"]] = Field(default_factory=lambda: ["alerts", "actions"])


class AlertSpec(_Strict):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    fault: str | None = Field(None, description="fault id the times are measured from (default: the first fault)")
    fires_within_s: float | None = Field(None, gt=0)
    resolves_within_s: float | None = Field(None, gt=0)
    evidence: list[str] = Field(
        default_factory=list, description="texts the firing alert's annotations must contain (the evidence a ticket carries)"
    )


class AlertExpectation(_Strict):
    """Alert ``name`` for a series matching ``labels`` fires within N s of the fault's start (event time)."""

    alert: AlertSpec


class NoAlertExpectation(_Strict):
    """Alert ``name`` (for series matching ``labels``) never fires."""

    no_alert: AlertSpec


class ActionSpec(_Strict):
    type: str
    target: str | None = None
    outcome: list[str] = Field(default_factory=lambda: ["executed", "dry-run"])
    exactly: int | None = Field(1, ge=0)
    at_least: int | None = Field(None, ge=0)
    min_attempts: int | None = Field(None, ge=1, description="the matching records needed this many tries (a retried call)")
    needs: Literal["kubernetes", "mlflow"] | None = Field(None, description="the target system the action reads and writes")
    without_target: list[str] | None = Field(
        None, description="outcomes expected instead when `needs` is not configured (the action is then decided in dry-run with its target unread)"
    )


class ActionExpectation(_Strict):
    """Audit records (topic ``watchkeeper.audit``) of action ``type`` on ``target`` with an ``outcome``."""

    action: ActionSpec


class OnlyExpectedAlerts(_Strict):
    """No alert fires beyond those the expectations name and ``allow``."""

    allow: list[str] = Field(default_factory=list)


class OnlyExpectedAlertsExpectation(_Strict):
    only_expected_alerts: OnlyExpectedAlerts


class PageSpec(_Strict):
    alert: str
    labels: dict[str, str] = Field(default_factory=dict)
    after_fault: str | None = Field(None, description="the page must arrive after this (infrastructure) fault ended")
    within_wall_s: float = Field(60.0, gt=0, description="... and at most this many wall seconds after it")


class PageExpectation(_Strict):
    """The page for an alert reaches Slack through Alertmanager (needs ``alertmanager: true``)."""

    page: PageSpec


class FlagExpectation(_Strict):
    """``no_event_lost: true`` / ``no_duplicate_page: true``."""

    no_event_lost: bool | None = None
    no_duplicate_page: bool | None = None

    @model_validator(mode="after")
    def _one(self) -> FlagExpectation:
        if (self.no_event_lost is None) == (self.no_duplicate_page is None):
            raise ValueError("give exactly one of no_event_lost, no_duplicate_page")
        return self


Expectation = Union[
    AlertExpectation,
    NoAlertExpectation,
    ActionExpectation,
    OnlyExpectedAlertsExpectation,
    PageExpectation,
    FlagExpectation,
]


class RegisteredModel(_Strict):
    """A registered model (or prompt) the runner creates on --mlflow-uri: versions 1..N, the alias on one."""

    versions: int = Field(2, ge=1, le=50)
    alias: str = "champion"
    alias_on: int | None = Field(None, ge=1, description="default: the highest version")


class RegistrySetup(_Strict):
    """What the MLflow registry holds when the traffic starts (only with --mlflow-uri)."""

    models: dict[str, RegisteredModel] = Field(default_factory=dict)
    prompts: dict[str, RegisteredModel] = Field(default_factory=dict)
    indexes: dict[str, RegisteredModel] = Field(
        default_factory=dict, description="vector indexes: registered models tagged watchkeeper.kind=index (alias e.g. live)"
    )


class KubernetesSetup(_Strict):
    """Deployments (``namespace/name: replicas``) the runner creates on --kubeconfig before the traffic."""

    deployments: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> KubernetesSetup:
        for key in self.deployments:
            if key.count("/") != 1:
                raise ValueError(f"deployment {key!r} is not namespace/name")
        return self


class AgentSettings(_Strict):
    """How the agent under test runs: in this process (fast) or as ``watchkeeper run`` (can be SIGKILLed)."""

    process: Literal["in-process", "subprocess"] = "in-process"
    partitions: int = Field(4, ge=1, le=64)
    resend_interval_s: float = Field(60.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict, description="extra WATCHKEEPER_* settings")


class Scenario(_Strict):
    """One chaos scenario; see simulations/README.md for the file format."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 0
    duration_s: float = Field(gt=0, le=7 * 86400)
    speed: float | None = Field(
        None, gt=0, description="scenario seconds per wall second; null: as fast as the agent consumes"
    )
    requires: list[Literal["actions", "llm-trace", "alertmanager", "kubernetes", "mlflow"]] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=lambda: ["../rules"], description="relative to the scenario file")
    prices: str | None = Field(None, description="LLM price table for spend_usd, relative to the scenario file")
    alertmanager: bool = False
    registry: RegistrySetup | None = None
    kubernetes: KubernetesSetup | None = None
    agent: AgentSettings = Field(default_factory=AgentSettings)
    fleet: Fleet
    steady_state: SteadyState = Field(default_factory=SteadyState)
    faults: list[Fault] = Field(default_factory=list)
    expect: list[Expectation] = Field(min_length=1)
    wall_timeout_s: float = Field(180.0, gt=0, description="give up on the agent after this long")
    xfail: str | None = Field(
        None, description="a known defect (the reason): failures print XFAIL and do not fail the suite; a pass prints XPASS"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_fault_ids(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("faults"), list):
            seen: dict[str, int] = {}
            faults = []
            for fault in data["faults"]:
                if isinstance(fault, dict) and "id" not in fault and "kind" in fault:
                    n = seen[fault["kind"]] = seen.get(fault["kind"], 0) + 1
                    fault = fault | {"id": fault["kind"] if n == 1 else f"{fault['kind']}-{n}"}
                faults.append(fault)
            data = data | {"faults": faults}  # the caller's mapping stays as it was
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        ids = [f.id for f in self.faults]
        if len(set(ids)) != len(ids):
            raise ValueError(f"fault ids must be unique, got {ids}")
        for f in self.faults:
            if f.end_s > self.duration_s:
                raise ValueError(f"fault {f.id!r} ends at {f.end_s:g} s, after the scenario ({self.duration_s:g} s)")
            if f.kind in INFRA_FAULTS and self.speed is None:
                raise ValueError(f"infrastructure fault {f.id!r} needs a paced scenario: set speed")
            if f.kind == "agent_kill" and self.agent.process != "subprocess":
                raise ValueError("agent_kill needs agent.process: subprocess")
            if f.kind == "alertmanager_down" and not self.alertmanager:
                raise ValueError("alertmanager_down needs alertmanager: true")
            if f.kind == "mlflow_down" and "mlflow" not in self.requires:
                raise ValueError("mlflow_down needs requires: [mlflow]")
            if f.kind == "kube_api_errors" and "kubernetes" not in self.requires:
                raise ValueError("kube_api_errors needs requires: [kubernetes]")
        for e in self.expect:
            spec = getattr(e, "alert", None) or getattr(e, "no_alert", None)
            ref = spec.fault if spec is not None else getattr(getattr(e, "page", None), "after_fault", None)
            if ref is not None and ref not in ids:
                raise ValueError(f"an expectation names fault {ref!r}; the faults are {ids}")
            if isinstance(e, AlertExpectation) and (e.alert.fires_within_s or e.alert.resolves_within_s) and not self.app_faults:
                raise ValueError("fires_within_s/resolves_within_s need an application fault to measure from")
            if isinstance(e, PageExpectation) and not self.alertmanager:
                raise ValueError("a page expectation needs alertmanager: true")
        return self

    @property
    def app_faults(self) -> list[Fault]:
        return [f for f in self.faults if f.kind in APP_FAULTS]

    @property
    def infra_faults(self) -> list[Fault]:
        return [f for f in self.faults if f.kind in INFRA_FAULTS]

    @property
    def steady_end_s(self) -> float:
        if self.steady_state.duration_s is not None:
            return self.steady_state.duration_s
        return min((f.start_s for f in self.faults), default=self.duration_s)

    def fault(self, fault_id: str | None) -> Fault | None:
        """The fault an expectation measures from: by id, else the first application fault."""
        if fault_id is not None:
            return next(f for f in self.faults if f.id == fault_id)
        return self.app_faults[0] if self.app_faults else None


def load_scenario(path: str | Path) -> tuple[Scenario, Path]:
    """Read and validate one scenario file; returns it with its folder (for relative paths)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping (name, duration_s, fleet, faults, expect)")
    from pydantic import ValidationError

    try:
        return Scenario.model_validate(data), path.resolve().parent
    except ValidationError as exc:
        lines = [f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ScenarioError("\n".join(lines)) from None
