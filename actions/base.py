"""The contract every remediation kind implements, and the record every decision leaves.

An action is written the Kubernetes way: read the target, compare it with what the alert
asks for, then change it with an optimistic write. ``plan`` is the read-and-compare
half and must not change anything (dry-run runs it too); ``apply`` is the write half
and must be idempotent, because at-least-once delivery means it can run again after a
crash between the write and the audit record. The guards (mode, cooldown, budgets,
lease, idempotency ledger) live outside the action, in one place, so adding a kind is
one module plus one registry entry and cannot bypass them.

Flow for one firing alert and one ``actions[]`` entry of its rule::

    params = Kind.Params.model_validate(entry)        # at rule load: errors carry file:line
    action = Kind(params, context)
    target = action.target(alert)                     # from params and the alert's labels
    plan   = await action.plan(alert, target)         # reads; may block (blast radius, rollout)
    ...guards...                                      # mode, cooldown, budgets, lease, ledger
    after  = await action.apply(plan, alert)          # writes, verifies, returns the new state
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.duration import parse_duration
from agent.model import Alert

if TYPE_CHECKING:
    from .kube_target import KubeScope

__all__ = [
    "Action",
    "ActionContext",
    "ActionFailed",
    "ActionParams",
    "Mode",
    "NotConfigured",
    "Outcome",
    "Plan",
    "Target",
    "TargetLock",
    "TargetRefused",
    "TransientActionError",
    "VERIFY_OUTCOMES",
]

Mode = Literal["dry-run", "enforce", "approve"]

Outcome = Literal[
    "executed", "dry-run", "noop", "skipped", "pending-approval", "approved", "expired", "failed",
    "recovered", "not_recovered", "inconclusive",
]
"""What one audit record says happened.

``noop``: the target was already in the desired state (a re-delivered alert after a
crash); ``skipped``: a guard refused (the record names it); ``failed``: retries ran out.
``recovered``, ``not_recovered``, ``inconclusive``: a verification of an earlier action
(the record's ``verify_of`` names it; see :mod:`actions.verify`).
"""

VERIFY_OUTCOMES = ("recovered", "not_recovered", "inconclusive")


class ActionParams(BaseModel):
    """Settings every kind shares; a kind subclasses this with its own fields.

    Unknown keys are errors so that a typo in a rule never silently turns a guard off.
    Durations accept Prometheus notation (``10m``) or seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: str
    mode: Mode | None = Field(None, description="dry-run | enforce | approve; unset: the agent's default (dry-run).")
    cooldown: float = Field(600.0, description="Minimum time between two executions on one target.")
    max_per_hour: int = Field(3, ge=0, description="Budget: executions per target per rolling hour.")
    retries: int = Field(3, ge=0, le=10, description="Retries of a failed apply, with exponential backoff.")
    approval_timeout: float = Field(1800.0, description="In approve mode, how long a request waits before it expires.")
    verify: bool | None = Field(
        None,
        description="Check the action worked (actions/verify.py). Unset: on for executed scale/rollback "
        "(or with undo: true; enforce, approved), off in dry-run; true in dry-run records whether the alert "
        "resolved without it.",
    )
    verify_within: float = Field(300.0, description="Event time the alert has, after the action, to resolve.")
    undo: bool = Field(False, description="Undo the action when its verification says not_recovered.")
    escalate: bool = Field(True, description="Page (WatchkeeperActionNotRecovered) when not_recovered.")

    undoable: ClassVar[bool] = False
    """Whether this kind can undo an execution (scale, rollback); ``undo: true`` elsewhere is an error."""
    verified_by_default: ClassVar[bool] = False
    """Whether an unset ``verify`` means on for this kind's executions."""

    @field_validator("cooldown", "approval_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("verify_within", mode="before")
    @classmethod
    def _window(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if not 1.0 <= seconds <= 86_400.0:
            raise ValueError(f"verify_within must be between 1s and 24h, got {value!r}")
        return seconds

    @model_validator(mode="after")
    def _undo_supported(self) -> ActionParams:
        if self.undo and not self.undoable:
            raise ValueError(f"undo: true is not supported by action type {self.type!r} (only scale and rollback)")
        if self.undo and self.verify is False:
            raise ValueError("undo: true needs verify (an undo follows a not_recovered verification)")
        return self

    def verifies(self, mode: str) -> bool:
        """Whether a decision in ``mode`` is followed by a verification."""
        if self.verify is not None:
            return self.verify
        return (self.verified_by_default or self.undo) and mode != "dry-run"


@dataclass(frozen=True, slots=True)
class Target:
    """What an action changes; ``key`` names it for cooldowns, budgets, leases and audit."""

    kind: str  # "deployment", "model", "prompt", "retrain", "webhook", ...
    name: str
    namespace: str = ""

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)


@dataclass(frozen=True, slots=True)
class Plan:
    """The result of read-and-compare: the state now, the state wanted, and whether to act.

    ``noop`` means the target already is where this alert wants it (for example the
    Deployment already carries this alert's mark): nothing to do, audit says so.
    ``blocked`` names a kind-specific guard that refuses (``blast-radius``,
    ``rollout-in-progress``, ``no-previous-version``) with ``reason`` in words.
    """

    target: Target
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    noop: bool = False
    blocked: str | None = None
    reason: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


class TransientActionError(Exception):
    """A failure worth retrying (409 conflict, 5xx, connection refused, timeout)."""


class ActionFailed(Exception):
    """A failure retrying cannot fix (403, 404, invalid template); reported at once."""


class TargetRefused(ActionFailed):
    """A target the action may not touch, refused before any request (see :mod:`actions.kube_target`).

    ``guard`` names the check that refused (``namespace``, ``kube-name``,
    ``allowed-names``, ``registry-name``); the remediator audits the decision as ``skipped`` by that guard
    and counts it, like the guards in :mod:`actions.guards`.
    """

    def __init__(self, guard: str, reason: str) -> None:
        super().__init__(reason)
        self.guard = guard
        self.reason = reason


class TargetLock(Protocol):
    """Mutual exclusion per target across agents (a Kubernetes Lease in production).

    ``acquire`` returns False, without waiting, when another holder owns a live lock;
    holding an expired one is allowed to be taken over. ``release`` is idempotent.
    """

    async def acquire(self, key: str, holder: str, ttl_s: float) -> bool: ...

    async def release(self, key: str, holder: str) -> None: ...


class NotConfigured(ActionFailed):
    """The agent has no client for this kind of target (no kubeconfig, no tracking URI).

    In dry-run the decision is still audited as ``dry-run`` (the target unread, and the
    record says so), so a new rule can be tried before its target is wired up; in
    enforce or approve mode it fails like any ``ActionFailed``.
    """


class ActionContext:
    """Clients and settings an action may use, built once by the runtime from config.

    Actions never read the environment or construct clients themselves, so tests pass
    a context pointing at the real test servers and the runtime passes one built from
    ``WATCHKEEPER_*`` variables. Attributes a deployment lacks are None; an action
    that needs one raises ``ActionFailed`` naming the missing setting.
    """

    def __init__(
        self,
        *,
        kube_api_client: Any = None,
        mlflow_tracking_uri: str | None = None,
        publish: Any = None,
        http: Any = None,
        namespaces: frozenset[str] | None = None,
        lock: TargetLock | None = None,
        agent_id: str = "watchkeeper",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.kube_api_client = kube_api_client  # kubernetes.client.ApiClient, or None
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.publish = publish  # async (topic: str, key: bytes, value: bytes) -> None
        self.http = http  # httpx.AsyncClient
        self.namespaces = namespaces  # allow-list for Kubernetes targets; None: any
        self.lock = lock  # None: the runtime's in-process lock (one agent only)
        self.agent_id = agent_id  # names this agent in marks, lease holders and audit
        self.extra = dict(extra or {})

    def kube_scope(self) -> KubeScope:
        """The checked way to the Kubernetes API (:class:`actions.kube_target.KubeScope`): allow-list and names."""
        from .kube_target import KubeScope

        return KubeScope(self.kube_api_client, self.namespaces)


class Action(abc.ABC):
    """One remediation kind. Subclasses set ``kind`` and ``Params`` and register in ``registry.py``."""

    kind: ClassVar[str]
    Params: ClassVar[type[ActionParams]] = ActionParams

    def __init__(self, params: ActionParams, context: ActionContext) -> None:
        self.params = params
        self.context = context
        # Set by the runtime before ``plan``/``apply``: this decision's idempotency key
        # (``actions.audit.decision_key``). An action that can mark its target (the
        # ``watchkeeper.io/last-action`` annotation, an MLflow tag) writes it there and
        # plans ``noop`` when it finds it, so a re-run after a crash does nothing twice.
        self.decision_key = ""

    @abc.abstractmethod
    def target(self, alert: Alert) -> Target:
        """Resolve the target from params and the alert's labels; ``ActionFailed`` if it cannot."""

    @abc.abstractmethod
    async def plan(self, alert: Alert, target: Target) -> Plan:
        """Read the target and decide; never writes (dry-run calls this too)."""

    async def plan_undo(
        self, before: Mapping[str, Any], after: Mapping[str, Any], alert: Alert, target: Target
    ) -> Plan:
        """Plan putting ``target`` back to ``before`` (what an executed decision found), read-only.

        ``after`` is what that decision left; a target that moved on since (someone else
        changed it) plans ``blocked="changed-since"``: an undo never overrides a newer
        change. ``decision_key`` is the undo's own key, so ``apply`` marks and resumes it
        like any decision. Kinds that cannot undo (the default) raise ``ActionFailed``.
        """
        raise ActionFailed(f"{self.kind} cannot undo an execution")

    @abc.abstractmethod
    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        """Make ``plan.after`` true, idempotently; verify and return the state read back.

        Raise ``TransientActionError`` for what a retry can fix, ``ActionFailed`` otherwise.
        """
