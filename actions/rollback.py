"""``rollback``: move a model's (prompt's, vector index's) serving alias back to the version that held it before.

Example rule entries::

    actions:
      - type: rollback                      # model: name from the alert's `model` label
        allowed: {names: [fraud-detector]}  # required: what this rule may roll back
        alias: champion
        restart: {namespace: ml-serving, deployment: "{{ $labels.service }}"}
        mode: approve
      - type: rollback
        registry: prompt
        name: "{{ $labels.service }}-system"   # LLM events carry no prompt name: say which
        allowed: {patterns: ["[a-z-]+-system"]}
      - type: rollback
        registry: index                     # a vector index registered as a model
        alias: live                         # name from the alert's `index` label
        allowed: {names: [support-docs]}

Target: ``Target("model" | "prompt" | "index", name)``. The name comes from labels, which any
producer sets, so it must be in the rule's ``allowed`` list (exact names or full-match
RE2 patterns, :mod:`actions.allowed_names`), and ``restart``'s namespace and Deployment
must pass :mod:`actions.kube_target` (the namespace allow-list, Kubernetes names); both
are checked in ``target``, before any MLflow or Kubernetes request, and a refusal is
audited as ``skipped`` by guard ``allowed-names``, ``namespace`` or ``kube-name``. Its
key (``model/fraud``) scopes cooldowns, budgets and the lease. ``name`` defaults to ``{{ $labels.model }}`` for models and
``{{ $labels.prompt }}`` for prompts (an LLM service that puts no ``prompt`` label on its
alerts must name the prompt in the rule, literally or from another label) and
``{{ $labels.index }}`` for indexes. An index is one registered model per vector index,
one model version per build, tagged ``watchkeeper.kind=index`` (see
:mod:`actions.mlflow_registry`); its version label is ``index_version`` (the field of
``retrieval`` events), so the same stale-alert check applies.

``plan`` reads the alias holder, the alias history (see :mod:`actions.alias_history`)
and the versions, and decides:

- ``noop``: the history already holds a move with this decision key (a re-delivered
  alert, a restart after the write): the rollback happened, never twice. If the move was
  recorded but the alias is still on the version it came from (a crash between the two
  writes), the plan finishes that move instead.
- ``blocked: stale-alert``: the alert's events name the version they saw
  (``model_version`` / ``prompt_version`` label) and the alias no longer points there.
  Someone (CI, a human, an earlier rollback) already moved it; rolling back now would
  demote a version the alert has no evidence against. This is also what keeps a slow
  reload from causing a second rollback: events still reporting the old version after
  the move are stale. Group the rule ``by`` the version label to get this check; without
  the label the check is skipped.
- ``blocked: rollout-in-progress``: ``restart`` is set and the serving Deployment is
  still rolling out (an earlier restart or a deploy); it is read in ``plan`` so a wrong
  namespace or name fails before the alias moves.
- ``blocked: no-previous-version``: no version is fit to go back to (see
  :func:`actions.alias_history.previous_version`); a rollback never guesses.

``apply`` (each step idempotent, safe to retry and to re-run after a crash): tag the
version rolled away from ``watchkeeper.bad`` with the alert; append the move (with the
decision key) to the history; move the alias; read it back; then, if ``restart`` is
set, rollout-restart the serving Deployment (marked with the decision key, so it
restarts once) so servers that resolve the alias at start load the old version.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from agent.model import Alert

from .allowed_names import AllowedNames
from .alias_history import BAD_TAG, Move, append_move, normalise_version, previous_version
from .base import Action, ActionFailed, ActionParams, NotConfigured, Plan, Target, TargetRefused, TransientActionError
from .kube_target import KubeTarget
from .label_template import check_label_template, render_label_template
from .mlflow_registry import RegistryClient, RegistryKind

__all__ = ["Rollback", "RollbackParams", "RestartParams"]

_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")  # MLflow's alias rule
_DEFAULT_NAME = {"model": "{{ $labels.model }}", "prompt": "{{ $labels.prompt }}", "index": "{{ $labels.index }}"}
_DEFAULT_VERSION_LABEL = {"model": "model_version", "prompt": "prompt_version", "index": "index_version"}


class RestartParams(BaseModel):
    """The serving Deployment to rollout-restart after the alias moved (templates over labels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "{{ $labels.namespace }}"
    deployment: str = "{{ $labels.deployment }}"

    _templates = field_validator("namespace", "deployment")(check_label_template)


class RollbackParams(ActionParams):
    """Which registry entry and alias to roll back, and what to restart.

    Parameters
    ----------
    registry
        ``model`` (MLflow Model Registry), ``prompt`` (MLflow prompt registry) or
        ``index`` (a vector index registered as a model, tagged ``watchkeeper.kind=index``).
    name
        ``{{ $labels.NAME }}`` template or literal; default the ``model`` label for models,
        the ``prompt`` label for prompts, the ``index`` label for indexes.
    alias
        The serving alias to move (default ``champion``).
    version_label
        The alert label that names the version the events came from (default
        ``model_version`` / ``prompt_version`` / ``index_version``); ``""`` turns the stale-alert check off.
    restart
        Optional ``{namespace, deployment}`` to rollout-restart after the move.
    allowed
        Required: the ``names`` and/or ``patterns`` (RE2, whole name) this entry may
        roll back; any other name from the labels is refused and audited.
    """

    registry: RegistryKind = "model"
    name: str = ""
    allowed: AllowedNames
    alias: str = "champion"
    version_label: str | None = None
    restart: RestartParams | None = None

    undoable: ClassVar[bool] = True
    verified_by_default: ClassVar[bool] = True

    _name = field_validator("name")(check_label_template)

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        if not _ALIAS.match(value) or value.lower() == "latest":
            raise ValueError(f"alias {value!r} is not a usable MLflow alias (letters, digits, _ and -; not 'latest')")
        return value

    @property
    def name_template(self) -> str:
        return self.name or _DEFAULT_NAME[self.registry]

    @property
    def serving_label(self) -> str:
        """The alert label with the version the events saw; "" when the check is off."""
        return _DEFAULT_VERSION_LABEL[self.registry] if self.version_label is None else self.version_label


class Rollback(Action):
    """Moves one alias back one version per alert incident, and says why in the registry."""

    kind = "rollback"
    Params = RollbackParams
    params: RollbackParams
    _client: RegistryClient | None = None  # made on first use: plan and apply share it

    def _registry(self) -> RegistryClient:
        uri = self.context.mlflow_tracking_uri
        if not uri:
            raise NotConfigured("no MLflow tracking URI: set WATCHKEEPER_MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_URI)")
        if self._client is None:
            self._client = RegistryClient(uri, self.params.registry)
        return self._client

    def target(self, alert: Alert) -> Target:
        """The registry entry, checked against ``allowed``; the restart target checked too, before any request."""
        name = render_label_template(self.params.name_template, alert.labels, "name")
        if len(name) > 256 or any(c in name for c in "'\\\n"):
            raise TargetRefused(
                "registry-name", f"{self.params.registry} name {name[:80]!r} (from the alert's labels) is not a registry name"
            )
        self.params.allowed.check(name, self.params.registry)
        self._restart_target(alert)
        return Target(self.params.registry, name)

    def _key(self, alert: Alert, target: Target) -> str:
        """The runtime sets ``decision_key``; a direct caller gets the same formula at index 0."""
        if self.decision_key:
            return self.decision_key
        from .audit import decision_key

        return decision_key(alert.rule_id, alert.fingerprint, alert.active_at, 0, target.key)

    def _restart_target(self, alert: Alert) -> dict[str, str] | None:
        """``{namespace, deployment}`` to restart, each checked (allow-list, names); None without ``restart``."""
        restart = self.params.restart
        if restart is None:
            return None
        namespace = render_label_template(restart.namespace, alert.labels, "restart.namespace")
        deployment = render_label_template(restart.deployment, alert.labels, "restart.deployment")
        checked = self._deployment({"namespace": namespace, "deployment": deployment})
        if self.context.kube_api_client is None:
            raise ActionFailed("rollback has restart set but there is no Kubernetes API client (WATCHKEEPER_KUBECONFIG)")
        return {"namespace": checked.ns, "deployment": checked.name}

    def _deployment(self, where: Mapping[str, str]) -> KubeTarget:
        """The serving Deployment as a checked target: every Kubernetes request of this action goes through it."""
        scope = self.context.kube_scope()
        return scope.namespace(where["namespace"], "restart.namespace").object(
            "deployment", where["deployment"], "restart.deployment"
        )

    async def plan(self, alert: Alert, target: Target) -> Plan:
        self.params.allowed.check(target.name, target.kind)  # whoever built ``target``
        registry, alias, name = self._registry(), self.params.alias, target.name
        restart = self._restart_target(alert)
        key = self._key(alert, target)

        def read() -> tuple[str | None, list[Move]]:
            return registry.alias_holder(name, alias), registry.history(name, alias)

        holder, history = await asyncio.to_thread(read)
        if holder is None:
            raise ActionFailed(f"{target.kind} {name!r} has no alias {alias!r}: nothing to roll back")
        before = {"registry": target.kind, "name": name, "alias": alias, "version": holder}
        detail: dict[str, Any] = {"history": [m.to_dict() for m in history[-5:]]}
        rollout = None
        if restart:
            detail["restart"] = restart
            rollout = await self._serving_rollout(restart)

        def stay(reason: str, blocked: str | None = None) -> Plan:
            return Plan(target, before, before, noop=blocked is None, blocked=blocked, detail=detail, reason=reason)

        def go(version: str, reason: str) -> Plan:
            return Plan(target, before, {**before, "version": version, "from": holder}, detail=detail, reason=reason)

        mine = [m for m in history if m.key == key]
        if mine:
            move = mine[-1]
            if holder == move.version:
                return stay(f"this alert already rolled {alias} back to {holder}")
            if move is history[-1] and move.previous == holder:
                detail["resume"] = True
                return go(move.version, f"finishing the interrupted rollback of {alias} {holder} -> {move.version}")
            return stay(f"this alert rolled {alias} back to {move.version}; it was moved to {holder} since, left alone")

        stale = self._stale(alert, holder)
        if stale:
            return stay(stale, "stale-alert")
        if rollout:
            return stay(f"the serving deployment is mid-rollout ({rollout}); not restarting it again", "rollout-in-progress")
        versions = await asyncio.to_thread(registry.versions, name)
        wanted, source = previous_version(holder, history, versions)
        detail["previous_from"] = source
        detail["bad_versions"] = sorted((v for v, info in versions.items() if info.bad), key=int)
        if wanted is None:
            return stay(f"no READY version of {name!r} other than {holder} that is not tagged {BAD_TAG}", "no-previous-version")
        return go(wanted, f"roll {alias} of {name} back from {holder} to {wanted} (previous holder, from {source})")

    def _stale(self, alert: Alert, holder: str) -> str | None:
        """Why the alert is not about the version the alias serves now, or None (also when it does not say)."""
        label = self.params.serving_label
        serving = alert.labels.get(label, "") if label else ""
        if not serving:
            return None
        try:
            serving = normalise_version(serving)
        except ValueError:
            return f"the alert's {label}={serving!r} is not a registry version"
        if serving != holder:
            return f"the alert is about version {serving} but {self.params.alias} is on {holder} now"
        return None

    async def plan_undo(
        self, before: Mapping[str, Any], after: Mapping[str, Any], alert: Alert, target: Target
    ) -> Plan:
        """Move the alias back to the version the rollback replaced, if it still holds the one it set.

        The replaced version's ``watchkeeper.bad`` tag (the rollback's verdict, which the
        failed verification contradicts) is cleared by ``apply``, and the move is recorded
        in the history with the undo's key (a re-delivered undo finds it and stays a noop).
        """
        self.params.allowed.check(target.name, target.kind)
        registry, alias, name = self._registry(), self.params.alias, target.name
        key = self._key(alert, target)
        holder, history = await asyncio.to_thread(lambda: (registry.alias_holder(name, alias), registry.history(name, alias)))
        now = {"registry": target.kind, "name": name, "alias": alias, "version": holder}
        detail: dict[str, Any] = {"undo": True, "history": [m.to_dict() for m in history[-5:]]}
        wanted, left = str(before.get("version") or ""), str(after.get("version") or "")
        mine = [m for m in history if m.key == key]
        if mine and holder == mine[-1].version:
            return Plan(target, now, now, noop=True, reason=f"this undo already moved {alias} back to {holder}", detail=detail)
        if not wanted or not left:
            return Plan(target, now, now, blocked="undo-unsupported", reason="the undone record names no versions", detail=detail)
        if holder != left and not (mine and holder == mine[-1].previous):
            return Plan(
                target, now, now, blocked="changed-since",
                reason=f"{alias} is on {holder} now, not the {left} the rollback set: changed since, left alone",
                detail=detail,
            )
        restart = self._restart_target(alert)
        if restart:
            detail["restart"] = restart
        versions = await asyncio.to_thread(registry.versions, name)
        if wanted not in versions or not versions[wanted].ready:
            return Plan(target, now, now, blocked="no-previous-version", reason=f"version {wanted} is gone or not READY", detail=detail)
        reason = f"undo: move {alias} of {name} back from {holder} to {wanted} (the rollback did not help)"
        return Plan(target, now, {**now, "version": wanted, "from": holder}, detail=detail, reason=reason)

    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        if plan.noop or plan.blocked:
            return dict(plan.before)
        self.params.allowed.check(plan.target.name, plan.target.kind)
        registry, alias, name = self._registry(), self.params.alias, plan.target.name
        wanted, origin = str(plan.after["version"]), str(plan.after["from"])
        key = self._key(alert, plan.target)
        agent = self.context.agent_id
        why = f"{alert.name or alert.rule_id} fired (rule {alert.rule_id}, fingerprint {alert.fingerprint[:16]})"

        def write() -> dict[str, Any]:
            holder = registry.alias_holder(name, alias)
            history = registry.history(name, alias)
            recorded = any(m.key == key for m in history)
            if holder not in (origin, wanted):
                raise ActionFailed(
                    f"{alias} of {name} moved to {holder} since the plan ({origin} -> {wanted}); not overriding it"
                )
            now = time.time()
            mark = {
                "fingerprint": alert.fingerprint,
                "alertname": alert.name,
                "rule_id": alert.rule_id,
                "decision_key": key,
                "ts": round(now, 3),
                "by": agent,
                "alias": alias,
                "rolled_back_to": wanted,
            }
            undo = bool(plan.detail.get("undo"))
            if undo:  # the version restored was blamed by the rollback; its verification says otherwise
                registry.set_version_tag(name, wanted, BAD_TAG, "")
            else:
                registry.set_version_tag(name, origin, BAD_TAG, json.dumps(mark, separators=(",", ":")))
            if not recorded:
                verb = "undo of a rollback" if undo else "rollback"
                move = Move(version=wanted, ts=now, by=agent, reason=f"{verb}: {why}", key=key, previous=origin)
                registry.write_history(name, alias, append_move(history, move, holder=origin))
            if holder != wanted:
                registry.set_alias(name, alias, wanted)
            found = registry.alias_holder(name, alias)
            if found != wanted:
                raise TransientActionError(f"{alias} of {name} reads back {found} after moving it to {wanted}")
            return {
                "registry": plan.target.kind,
                "name": name,
                "alias": alias,
                "version": found,
                "from": origin,
                **({"bad_cleared": wanted} if undo else {"bad_tagged": origin}),
            }

        after = await asyncio.to_thread(write)
        restart = plan.detail.get("restart")
        if restart:
            after["restart"] = await self._restart(restart, key, f"rollback of {name}@{alias} {origin} -> {wanted}: {why}")
        return after

    async def _serving_rollout(self, where: Mapping[str, str]) -> str | None:
        """Read the Deployment to restart before anything moves: a typo fails here, not half-way."""
        from .kube import read_deployment  # lazily: the kubernetes client is heavy

        state = await asyncio.to_thread(read_deployment, self._deployment(where))
        return state.rollout

    async def _restart(self, where: Mapping[str, str], key: str, reason: str) -> dict[str, Any]:
        from .kube import restart_deployment  # lazily: the kubernetes client is heavy

        if self.context.kube_api_client is None:
            raise ActionFailed("rollback has restart set but there is no Kubernetes API client (WATCHKEEPER_KUBECONFIG)")
        result = await asyncio.to_thread(restart_deployment, self._deployment(where), reason, key=key)
        return {**where, **result}
