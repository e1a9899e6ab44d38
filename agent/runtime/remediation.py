"""The remediation side of one agent, wired: action context, audit ledger, remediator, HTTP API.

``AgentApp`` owns one :class:`Remediation`: its ``handle`` is the body of the
``<group>.actions`` subscriber on the alerts topic, its ``run`` a background task (the
audit-topic tail that rebuilds and follows the ledger, and the approval sweep), and its
``routes`` are served by the agent's HTTP server:

* ``GET /actions``: recent decisions and pending approvals as JSON (``?pending=1``);
  any valid token (``read`` or ``approve``) may list them;
* ``POST /actions/{id}/approve`` and ``POST /actions/{id}/reject`` (body, optional:
  ``{"reason": "..."}``); they need an ``approve`` token. The approver recorded is the
  name bound to the token (``approvers.Approvers``), never one the caller claims: a
  ``by`` in the body is ignored. The HTTP server authenticates before these handlers
  run and answers 403 on every route when no token is configured: an open endpoint
  that lets anyone who reaches the metrics port approve a production change is not a
  safe default. Without a token, approve with ``watchkeeper actions approve`` (Kafka
  credentials and the topic key file are the gate: an audit record counts only
  when signed, see signing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from actions.audit import AuditRecord
from actions.base import Action, ActionContext
from actions.verify import Verifier
from agent.config import AgentConfig
from agent.logs import get_logger
from agent.model import Alert, AlertState
from agent.rules import RuleSet

from .action_context import build_action_context
from .audit_log import AuditTail
from .ingest import publish_alerts
from .approvers import Role
from .http import Request, Response, Route
from .remediator import Annotate, Remediator
from .selfmetrics import SelfMetrics
from .signing import RecordAuth, TopicRole
from .topic_keys import TopicKeys

__all__ = ["Remediation", "decode_firing", "decode_snapshots"]

_log = get_logger(__name__)


_MAX_REASON_CHARS = 1000  # an approval's reason is kept in the audit record; bounded like any input

STALE_ALERT_S = 900.0
"""Alert records published longer ago than this are not acted on: a new consumer group
starting at the earliest offset must not remediate last week's incidents. A firing
alert is re-sent every resend interval, so a live incident always has a fresh record."""


def decode_firing(records: Iterable[Any], *, now: float | None = None, max_age_s: float = STALE_ALERT_S) -> list[Alert]:
    """FIRING alerts from records of the alerts topic, in order, re-sends included.

    Pass only authentic records (``Remediation.handle`` admits each through its
    ``RecordAuth`` once, for decisions and verdicts alike): a forged alert is never acted on.

    Unlike the notifier, a later RESOLVED snapshot in the same batch does not hide a
    FIRING one: the incident happened and its actions are decided (and audited).
    Re-sends are kept: the ledger recognises them (and counts them as duplicates).
    """
    oldest_ms = ((time.time() if now is None else now) - max_age_s) * 1000.0
    out: list[Alert] = []
    stale = 0
    for rec in records:
        if rec.timestamp is not None and 0 < rec.timestamp < oldest_ms:
            stale += 1
            continue
        try:
            alert = Alert.from_dict(json.loads(rec.value or b""))
        except (ValueError, KeyError, TypeError) as exc:
            _log.error("skipping undecodable record on the alerts topic", error=str(exc))
            continue
        if alert.state is AlertState.FIRING:
            out.append(alert)
    if stale:
        _log.info("alert records older than the remediation horizon skipped", count=stale, max_age_s=max_age_s)
    return out


def decode_snapshots(records: Iterable[Any]) -> list[Alert]:
    """Every alert snapshot (FIRING, its re-sends, RESOLVED) of a batch, in order, for verification.

    No age horizon: a verdict is judged on the snapshots' event time, so an old record
    read again gives the verdict it gave before (and the ledger knows it was recorded).
    """
    out: list[Alert] = []
    for rec in records:
        try:
            out.append(Alert.from_dict(json.loads(rec.value or b"")))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # decode_firing logs the undecodable ones
    return out


class Remediation:
    """Builds and runs the remediator for an agent (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        broker: Any,
        metrics: SelfMetrics,
        *,
        rules: Callable[[], RuleSet],
        stopping: asyncio.Event,
        annotate: Annotate | None = None,
        on_audit: Callable[[AuditRecord], None] | None = None,
        context: ActionContext | None = None,
        registry: Mapping[str, type[Action]] | None = None,
        keys: TopicKeys | None = None,
    ) -> None:
        import httpx

        self.config = config
        self._broker = broker
        self._stopping = stopping
        self._http = httpx.AsyncClient(timeout=10.0) if context is None else None
        self.context = context or build_action_context(config, self._publish, http=self._http)
        self.remediator = Remediator(
            rules=rules,
            context=self.context,
            publish=self._publish_record,
            metrics=metrics,
            ceiling=config.actions_mode,
            fleet_max_per_hour=config.actions_max_per_hour,
            backoff_s=config.actions_backoff_s,
            annotate=annotate,
            on_audit=on_audit,
            registry=registry,
            page=self._page,
            verifier=Verifier(quiet_s=config.staleness_s, grace_s=max(900.0, 4 * config.resend_interval_s)),
        )
        # alerts and audit records count only when signed with the agent's key file (AgentApp
        # passes it; without one, a key of this object's own, which verifies only what it wrote)
        keys = keys if keys is not None else TopicKeys.generate()
        self.alerts_auth = RecordAuth(keys, TopicRole.ALERTS, topic=config.topics.alerts, metrics=metrics)
        self.audit_auth = RecordAuth(keys, TopicRole.AUDIT, topic=config.topics.audit, metrics=metrics)
        self.tail = AuditTail(
            config.kafka.bootstrap, config.topics.audit, self.remediator.observe, security=config.kafka.security, auth=self.audit_auth
        )

    async def _publish(self, topic: str, key: bytes, value: bytes) -> None:
        await self._broker.publish(value, topic, key=key, headers={"content-type": "application/json"})

    async def _page(self, alert: Alert) -> None:
        """A page of the remediator's own (``WatchkeeperActionNotRecovered``): one FIRING snapshot on the alerts topic."""
        await asyncio.gather(*publish_alerts(self._broker, [alert], self.config.topics.alerts, auth=self.alerts_auth))

    async def _publish_record(self, record: AuditRecord) -> None:
        key, value = record.target.encode(), record.to_json()
        headers = {"content-type": "application/json", **self.audit_auth.headers(key, value)}
        await self._broker.publish(value, self.config.topics.audit, key=key, headers=headers)

    # --- the subscriber and the background task ------------------------------------------
    async def handle(self, records: Any) -> None:
        """Decide the actions of a batch of alert transitions; raising rewinds the batch."""
        max_age_s = max(STALE_ALERT_S, 4 * self.config.resend_interval_s)  # a live alert is always fresher
        # only signed records count, for decisions and verdicts alike (each checked and counted once)
        authentic = [rec for rec in records if self.alerts_auth.admit(rec)]
        alerts = [a for a in decode_firing(authentic, max_age_s=max_age_s) if self.remediator.wants(a)]
        if alerts:
            await self._ledger_ready()
            await self.remediator.handle(alerts)
        if self.remediator.verifying:  # after the decisions: a batch may hold an action and its verdict
            await self.remediator.verify(decode_snapshots(authentic))

    async def _ledger_ready(self) -> None:
        if self.tail.caught_up.is_set():
            return
        waits = [asyncio.create_task(self.tail.caught_up.wait()), asyncio.create_task(self._stopping.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if not self.tail.caught_up.is_set():
            raise RuntimeError("stopping before the audit ledger was rebuilt; the alerts will be redelivered")

    async def run(self) -> None:
        """Follow the audit topic; execute approvals and expire requests as they come due."""
        tail = asyncio.create_task(self.tail.run(self._stopping), name="audit-tail")
        try:
            while not self._stopping.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.remediator.wake.wait(), timeout=1.0)
                if self._stopping.is_set() or not self.tail.caught_up.is_set():
                    continue
                try:
                    await self.remediator.sweep()
                except Exception:  # noqa: BLE001 - a failed sweep is logged and tried again
                    _log.exception("approval sweep failed; retrying")
                    await asyncio.sleep(1.0)
        finally:
            tail.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await tail

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # --- HTTP ------------------------------------------------------------------------------
    def routes(self) -> dict[str, Route]:
        """The approval API; listing needs any token, answering an ``approve`` one."""
        return {"/actions": Route(self._list), "/actions/": Route(self._answer, role=Role.APPROVE)}

    async def _list(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, "method not allowed\n", headers={"allow": "GET, HEAD"})
        query = parse_qs(request.query)
        try:
            limit = max(1, min(1000, int(query.get("limit", ["100"])[0])))
        except ValueError:
            return Response(400, "limit must be an integer\n")
        ledger = self.remediator.ledger
        body: dict[str, Any] = {
            "agent": self.remediator.agent_id,
            "ledger_ready": self.tail.caught_up.is_set(),
            "pending": [p.record.to_dict() for p in ledger.waiting()],
        }
        if query.get("pending", ["0"])[0] not in ("1", "true"):
            body["recent"] = [r.to_dict() for r in list(ledger.recent)[::-1][:limit]]
        return _json(200, body)

    async def _answer(self, request: Request) -> Response:
        parts = request.path.removeprefix("/actions/").strip("/").split("/")
        if len(parts) != 2 or parts[1] not in ("approve", "reject"):
            return Response(404, "use POST /actions/{id}/approve or /actions/{id}/reject\n")
        if request.method != "POST":
            return Response(405, "method not allowed\n", headers={"allow": "POST"})
        principal = request.principal
        if principal is None or not principal.may(Role.APPROVE):
            # HttpApp authenticates first; this guards a handler wired without it
            return Response(
                403,
                "answering approvals over HTTP needs an approver token (WATCHKEEPER_APPROVERS_FILE), "
                "or answer with `watchkeeper actions approve|reject ID`\n",
            )
        try:
            body = json.loads(request.body) if request.body.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            return Response(400, 'the body must be a JSON object like {"reason": "..."}\n')
        claimed = body.get("by")
        if claimed is not None and claimed != principal.name:
            _log.warning("approval names another approver; the token's name is recorded", recorded=principal.name)
        reason = str(body.get("reason") or "")[:_MAX_REASON_CHARS]
        try:
            record = await self.remediator.answer(parts[0], by=principal.name, approve=parts[1] == "approve", reason=reason)
        except LookupError as exc:
            return Response(404, f"{exc}\n")
        return _json(200, record.to_dict())


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body, indent=1) + "\n", content_type="application/json")
