"""The shipped action kinds, with their reads and writes pointed at the simulated targets.

Each simulated kind subclasses the real one and keeps everything that decides: target
resolution (templates, the namespace allow-list, ``allowed`` name lists, Kubernetes name
rules, all in the real ``target``), the wanted-state arithmetic and its refusals
(blast radius, HPA ceilings, rollout in progress, stale alert, no previous version).
Only the I/O is replaced: ``plan`` reads :class:`SimulatedTargets` instead of the API,
``apply`` changes it instead of the cluster or the registry. So a backtest refuses what
production would refuse, for the same reason, named by the same guard, and no client is
ever made (the action context has none).

Kinds with no target state worth simulating (``notify``, ``retrain``) keep their real
``target`` and plan to do what they would do; ``apply`` records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actions.base import Action, ActionFailed, Plan, Target
from actions.registry import ACTIONS
from actions.rollback import Rollback
from actions.scale import Scale
from agent.model import Alert

from .targets import SimulatedTargets

__all__ = ["SimRollback", "SimScale", "simulated_registry"]


def _world(action: Action) -> SimulatedTargets:
    world: SimulatedTargets = action.context.extra["simulated_targets"]
    return world


class SimScale(Scale):
    """``scale`` against a simulated Deployment (and HPA)."""

    async def plan(self, alert: Alert, target: Target) -> Plan:
        dep = _world(self).deployment(target.namespace, target.name)
        before: dict[str, Any] = {"replicas": dep.replicas}
        detail: dict[str, Any] = {"decision_key": self._key(alert, target), "via": "hpa" if dep.hpa_min is not None else "scale"}
        if dep.rollout:
            return Plan(target, before, before, blocked="rollout-in-progress", reason=f"rollout in progress: {dep.rollout}", detail=detail)
        if dep.hpa_min is not None and dep.hpa_max is not None:
            hpa = {"name": target.name, "min_replicas": dep.hpa_min, "max_replicas": dep.hpa_max}
            before.update(hpa=target.name, hpa_min_replicas=dep.hpa_min, hpa_max_replicas=dep.hpa_max)
            detail["hpa"] = target.name
            return self._plan_hpa(target, dep.replicas, hpa, before, detail)
        wanted = self._wanted(dep.replicas)
        after = {"replicas": wanted}
        detail["mark"] = f"replicas={wanted}"
        if wanted == dep.replicas:
            return self._unchanged(target, before, after, dep.replicas, "replicas", self.params.max_replicas, detail)
        reason = f"scale {target.namespace}/{target.name} from {dep.replicas} to {wanted}"
        return Plan(target, before, after, reason=reason, detail=detail)

    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        world = _world(self)
        target = plan.target
        dep = world.deployment(target.namespace, target.name)
        if plan.detail.get("via") == "hpa":
            dep.hpa_min = max(dep.hpa_min or 0, int(plan.after["hpa_min_replicas"]))
            dep.replicas = max(dep.replicas, dep.hpa_min)
            world.changes.append((target.key, f"hpa minReplicas -> {dep.hpa_min}"))
            return {"hpa": target.name, "hpa_min_replicas": dep.hpa_min, "replicas": dep.replicas}
        before = dep.replicas
        dep.replicas = int(plan.after["replicas"])
        world.changes.append((target.key, f"replicas {before} -> {dep.replicas}"))
        return {"replicas": dep.replicas}


class SimRollback(Rollback):
    """``rollback`` against a simulated registry alias."""

    def _restart_target(self, alert: Alert) -> dict[str, str] | None:
        """The restart target's names and namespace are checked as in production; no client is needed."""
        restart = self.params.restart
        if restart is None:
            return None
        from actions.label_template import render_label_template

        namespace = render_label_template(restart.namespace, alert.labels, "restart.namespace")
        deployment = render_label_template(restart.deployment, alert.labels, "restart.deployment")
        checked = self._deployment({"namespace": namespace, "deployment": deployment})
        return {"namespace": checked.ns, "deployment": checked.name}

    async def plan(self, alert: Alert, target: Target) -> Plan:
        self.params.allowed.check(target.name, target.kind)
        restart = self._restart_target(alert)
        entry = _world(self).entry(target.kind, target.name)
        key, alias, holder = self._key(alert, target), self.params.alias, entry.holder
        before = {"registry": target.kind, "name": target.name, "alias": alias, "version": holder}
        detail: dict[str, Any] = {"restart": restart} if restart else {}
        if any(k == key for _, _, k in entry.moves):
            return Plan(target, before, before, noop=True, detail=detail, reason=f"this alert already rolled {alias} back")
        stale = self._stale(alert, holder)
        if stale:
            return Plan(target, before, before, blocked="stale-alert", detail=detail, reason=stale)
        if restart:
            dep = _world(self).deployment(restart["namespace"], restart["deployment"])
            if dep.rollout:
                reason = f"the serving deployment is mid-rollout ({dep.rollout}); not restarting it again"
                return Plan(target, before, before, blocked="rollout-in-progress", detail=detail, reason=reason)
        wanted = _previous(entry)
        if wanted is None:
            reason = f"no version of {target.name!r} other than {holder} that is not marked bad"
            return Plan(target, before, before, blocked="no-previous-version", detail=detail, reason=reason)
        after = {**before, "version": wanted, "from": holder}
        return Plan(target, before, after, detail=detail, reason=f"roll {alias} of {target.name} back from {holder} to {wanted}")

    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        if plan.noop or plan.blocked:
            return dict(plan.before)
        world = _world(self)
        entry = world.entry(plan.target.kind, plan.target.name)
        wanted, origin = str(plan.after["version"]), str(plan.after["from"])
        if entry.holder != origin:
            raise ActionFailed(f"{self.params.alias} moved to {entry.holder} since the plan ({origin} -> {wanted})")
        entry.bad.add(origin)
        entry.moves.append((wanted, origin, self._key(alert, plan.target)))
        entry.holder = wanted
        world.changes.append((plan.target.key, f"{self.params.alias} {origin} -> {wanted}"))
        return {**plan.after, "bad_tagged": origin}


def _previous(entry: Any) -> str | None:
    """The version the alias held before (its last move's origin), else the newest good older version."""
    for _to, origin, _key in reversed(entry.moves):
        if origin not in entry.bad and origin != entry.holder:
            return str(origin)
    older = [v for v in entry.versions if v not in entry.bad and v != entry.holder and int(v) < int(entry.holder)]
    return older[-1] if older else None


def _recording(kind: type[Action]) -> type[Action]:
    """A kind that keeps its real ``target`` and ``plan``-free side effects: it says and records what it would do."""

    async def plan(self: Action, alert: Alert, target: Target) -> Plan:
        return Plan(target, {}, {"would": self.kind}, reason=f"{self.kind} {target.key}")

    async def apply(self: Action, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        _world(self).changes.append((plan.target.key, f"{self.kind} sent"))
        return {"would": self.kind, "done": True}

    return type(f"Sim{kind.__name__}", (kind,), {"plan": plan, "apply": apply, "__doc__": f"``{kind.kind}``, recorded not sent."})


def simulated_registry() -> dict[str, type[Action]]:
    """Every shipped kind by name, each pointed at the simulated targets."""
    special: dict[str, type[Action]] = {"scale": SimScale, "rollback": SimRollback}
    return {name: special.get(name) or _recording(kind) for name, kind in sorted(ACTIONS.items())}
