"""Delivery of alert transitions from the alerts topic to a sink (Alertmanager or terminal).

The alerts topic is the durable outbox between deciding and paging: the ingestion
handler publishes transitions there before committing event offsets, and this consumer
commits the alerts topic only after a sink accepted them. So an Alertmanager outage
delays pages (retried with backoff) but never loses them, and never stalls the event
consumer.

Only alerts the agents signed are paged: the handler (``AgentApp.handle_alerts``) passes
the batch through ``signing.RecordAuth`` before :func:`decode_alerts`, so a record anyone
else wrote on the alerts topic is counted and skipped, and its offset committed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Protocol, TextIO

from agent.logs import get_logger
from agent.model import Alert, AlertState

__all__ = ["AlertSink", "TerminalSink", "decode_alerts"]

_log = get_logger(__name__)


class AlertSink(Protocol):
    """Where alert transitions go; ``AlertmanagerClient`` is the production one."""

    async def deliver(self, alerts: Sequence[Alert], *, stop: asyncio.Event | None = None) -> bool: ...


def decode_alerts(values: Iterable[bytes | None]) -> list[Alert]:
    """Alerts from records of the alerts topic; the last snapshot of each fingerprint wins.

    An undecodable record (written by something else) is logged and skipped: retrying
    it forever would block every page behind it.
    """
    latest: dict[str, Alert] = {}
    for value in values:
        try:
            alert = Alert.from_dict(json.loads(value or b""))
        except (ValueError, KeyError, TypeError) as exc:
            _log.error("skipping undecodable record on the alerts topic", error=str(exc))
            continue
        latest.pop(alert.fingerprint, None)
        latest[alert.fingerprint] = alert
    return list(latest.values())


class TerminalSink:
    """Prints pages for people watching a terminal (the demo, when no Alertmanager is set)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self.delivered: list[Alert] = []

    async def deliver(self, alerts: Sequence[Alert], *, stop: asyncio.Event | None = None) -> bool:
        out = self._out or sys.stdout
        for a in alerts:
            if a.state is AlertState.FIRING and any(d.fingerprint == a.fingerprint and d.state is AlertState.FIRING and d.fired_at == a.fired_at for d in self.delivered):
                continue  # a re-send of a page already shown
            self.delivered.append(a)
            out.write(_line(a) + "\n")
        out.flush()
        return True


def _line(a: Alert) -> str:
    when = a.fired_at if a.state is AlertState.FIRING else a.resolved_at
    stamp = datetime.fromtimestamp(when or a.active_at, tz=timezone.utc).strftime("%H:%M:%S")
    series = ", ".join(f"{k}={v}" for k, v in a.labels.items() if k != "alertname")
    mark = "FIRING  " if a.state is AlertState.FIRING else "RESOLVED"
    summary = a.annotations.get("summary", "")
    return f"[{stamp}] {mark} {a.name} {{{series}}} {summary}"


