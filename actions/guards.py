"""The guards every action passes, in one place, so that no action kind can skip one.

``GuardPipeline.decide`` turns (action entry, plan, ledger) into a ``Decision``: act,
dry-run, noop, skipped by a named guard, wait for approval, or nothing at all (a
duplicate of a decision already taken). It is pure: the ledger is read, never written,
and the clock is injected, so every guard is unit-testable. The one guard that needs
I/O, the per-target lease, is taken by the runtime after a decision to act
(:func:`take_lease`), and released after the apply.

Order, and the name each guard puts in the audit record:

``mode``
    the rule's mode (unset: ``dry-run``) capped by the agent's ceiling
    (``dry-run`` < ``approve`` < ``enforce``); never refuses, it decides what acting means.
``idempotency``
    the decision key was decided before (a re-sent alert, a redelivery, another agent):
    nothing is recorded again.
``cooldown``, ``budget-target``, ``budget-fleet``
    executions of this action on this target, on this target per hour, everywhere per hour.
``namespace``
    a namespaced target outside the allow-list.
``blast-radius``, ``rollout-in-progress``, ... (``Plan.blocked``)
    what the action kind found when it read the target.
``approval``
    approve mode: wait for a person (or go on when one approved).
``lease``
    another agent is changing the target now.

Every guard is evaluated (the record shows them all); the first that refuses names
the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal, get_args

from .audit import GuardResult
from .base import ActionFailed, ActionParams, Mode, Plan, TargetLock, TransientActionError
from .ledger import BUDGET_WINDOW_S, Ledger

__all__ = ["Decision", "GuardPipeline", "MODE_RANK", "effective_mode", "take_lease"]

MODE_RANK: dict[str, int] = {"dry-run": 0, "approve": 1, "enforce": 2}
_MODES = get_args(Mode)

Verdict = Literal["act", "dry-run", "noop", "skipped", "pending-approval", "duplicate"]


def effective_mode(rule_mode: str | None, ceiling: str) -> str:
    """The rule's mode (unset: dry-run), never above the agent's ceiling."""
    wanted = rule_mode or "dry-run"
    if wanted not in MODE_RANK or ceiling not in MODE_RANK:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {wanted!r} / ceiling {ceiling!r}")
    return wanted if MODE_RANK[wanted] <= MODE_RANK[ceiling] else ceiling


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guards decided; ``guard`` names the refusing guard for ``skipped``/``duplicate``."""

    verdict: Verdict
    mode: str
    guards: tuple[GuardResult, ...]
    guard: str | None = None
    reason: str = ""


class GuardPipeline:
    """Evaluates the guards for one decision against the ledger.

    Parameters
    ----------
    ledger
        What was decided and executed before (rebuilt from the audit topic).
    ceiling
        The agent's mode ceiling (``WATCHKEEPER_ACTIONS_MODE``): no rule acts above it.
    fleet_max_per_hour
        Executions allowed across every target per rolling hour.
    namespaces
        Namespaces a namespaced target may be in; None allows any.
    clock
        Wall clock (epoch seconds); tests pass their own.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        ceiling: str = "dry-run",
        fleet_max_per_hour: int = 20,
        namespaces: Collection[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ceiling not in MODE_RANK:
            raise ValueError(f"actions mode ceiling must be one of {', '.join(_MODES)}, got {ceiling!r}")
        if fleet_max_per_hour < 0:
            raise ValueError("fleet_max_per_hour must be >= 0")
        self.ledger = ledger
        self.ceiling = ceiling
        self.fleet_max_per_hour = fleet_max_per_hour
        self.namespaces = None if namespaces is None else frozenset(namespaces)
        self.clock = clock

    def decide(
        self, *, key: str, action: str, params: ActionParams, plan: Plan, approved_by: str | None = None
    ) -> Decision:
        """Run every guard; ``approved_by`` is set when executing a request a person approved."""
        now = self.clock()
        target = plan.target.key
        mode = effective_mode(params.mode, self.ceiling)
        results = [self._mode(params.mode, mode)]

        status = self.ledger.status(key)
        if status is None:
            results.append(GuardResult("idempotency", True, "first decision for this alert incident and target"))
        elif approved_by is not None and status == "pending-approval":
            results.append(GuardResult("idempotency", True, "executing the approved request"))
        else:
            results.append(GuardResult("idempotency", False, f"already decided for this alert incident: {status}"))
            return Decision("duplicate", mode, tuple(results), "idempotency", f"already decided: {status}")

        if plan.noop:
            reason = plan.reason or "the target is already in the wanted state"
            return Decision("noop", mode, tuple(results), None, reason)

        results += [
            self._cooldown(action, target, params.cooldown, now),
            self._budget_target(target, params.max_per_hour, now),
            self._budget_fleet(now),
            self._namespace(plan.target.namespace),
        ]
        if plan.blocked:
            results.append(GuardResult(plan.blocked, False, plan.reason or plan.blocked))
        results.append(self._approval(mode, approved_by))

        refused = next((r for r in results if not r.ok and r.name != "approval"), None)
        if refused is not None:
            return Decision("skipped", mode, tuple(results), refused.name, refused.detail)
        if mode == "dry-run":
            return Decision("dry-run", mode, tuple(results), None, plan.reason or "dry-run: nothing changed")
        if mode == "approve" and approved_by is None:
            return Decision("pending-approval", mode, tuple(results), "approval", "waiting for a person to approve")
        return Decision("act", mode, tuple(results), None, plan.reason)

    # --- the guards -----------------------------------------------------------------------
    def _mode(self, wanted: str | None, mode: str) -> GuardResult:
        if wanted is None:
            return GuardResult("mode", True, f"{mode}: the rule sets no mode (agent ceiling {self.ceiling})")
        if mode != wanted:
            return GuardResult("mode", True, f"rule asks {wanted}; agent ceiling is {self.ceiling}: {mode}")
        return GuardResult("mode", True, f"{mode} (agent ceiling {self.ceiling})")

    def _cooldown(self, action: str, target: str, cooldown_s: float, now: float) -> GuardResult:
        last = self.ledger.last_execution(action, target)
        if last is None:
            return GuardResult("cooldown", True, f"no earlier {action} on {target}")
        since = now - last
        if since < cooldown_s:
            return GuardResult(
                "cooldown", False, f"last {action} on {target} {since:.0f}s ago; cooldown {cooldown_s:.0f}s"
            )
        return GuardResult("cooldown", True, f"last {action} on {target} {since:.0f}s ago (cooldown {cooldown_s:.0f}s)")

    def _budget_target(self, target: str, limit: int, now: float) -> GuardResult:
        used = self.ledger.executions(target, now)
        ok = used < limit
        window = f"{BUDGET_WINDOW_S / 3600:g}h"
        return GuardResult("budget-target", ok, f"{used} of {limit} actions on {target} in the last {window}")

    def _budget_fleet(self, now: float) -> GuardResult:
        used = self.ledger.fleet_executions(now)
        ok = used < self.fleet_max_per_hour
        return GuardResult("budget-fleet", ok, f"{used} of {self.fleet_max_per_hour} actions fleet-wide in the last hour")

    def _namespace(self, namespace: str) -> GuardResult:
        if not namespace:
            return GuardResult("namespace", True, "the target has no namespace")
        if self.namespaces is None:
            return GuardResult("namespace", True, f"{namespace}: every namespace allowed")
        if namespace in self.namespaces:
            return GuardResult("namespace", True, f"{namespace} is allowed")
        allowed = ", ".join(sorted(self.namespaces)) or "none"
        return GuardResult("namespace", False, f"{namespace} is not in the allow-list ({allowed})")

    def _approval(self, mode: str, approved_by: str | None) -> GuardResult:
        if mode != "approve":
            return GuardResult("approval", True, f"not needed in {mode} mode")
        if approved_by is not None:
            return GuardResult("approval", True, f"approved by {approved_by}")
        return GuardResult("approval", False, "waiting for approval")


async def take_lease(lock: TargetLock, target: str, holder: str, ttl_s: float) -> GuardResult:
    """The lease guard: hold the target for ``ttl_s`` or refuse because another agent does.

    A lock that fails (the API server answers 500, or is down) raises
    ``TransientActionError``: the caller retries it like any transient step and records
    ``failed`` when retries run out. It never acts without the lease: acting without
    knowing whether someone else is acting is what the lease exists to prevent.
    """
    try:
        ok = await lock.acquire(target, holder, ttl_s)
    except ActionFailed as exc:  # refused for good (403: the Role lacks leases)
        return GuardResult("lease", False, f"could not take the lease on {target}: {exc}")
    except Exception as exc:  # noqa: BLE001 - anything else is worth another try
        raise TransientActionError(f"could not take the lease on {target}: {exc}") from exc
    if ok:
        return GuardResult("lease", True, f"held by {holder} for up to {ttl_s:.0f}s")
    return GuardResult("lease", False, f"another agent holds the lease on {target}")
