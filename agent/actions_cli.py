"""``watchkeeper actions``: list remediation decisions, approve or reject pending ones.

Everything is read from and written to the audit topic, the same log the agents keep
their ledger in, so the commands work from any machine that reaches Kafka and need no
agent address. An approval is one ``approved`` record naming the request; the agent
that asked picks it up, re-plans and executes (see agent/runtime/remediator.py).

Agents obey only audit records signed with their topic key file, and ignore the rest
(agent/runtime/signing.py), so these commands sign with the same file
(``--topic-keys-file``, ``WATCHKEEPER_TOPIC_KEYS_FILE``; default: the one an agent on
this machine created). They never create a key: a new key would sign answers no agent
obeys. ``list`` shows only records signed with it too.

    watchkeeper actions list --since 1h
    watchkeeper actions list --pending --json
    watchkeeper actions approve 3f2a9c41d0 --reason "checked the dashboard"
    watchkeeper actions reject 3f2a9c41d0 --reason "a deploy is fixing it"
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from agent.errors import WatchkeeperError

if TYPE_CHECKING:
    from actions.audit import AuditRecord
    from actions.ledger import Ledger
    from agent.runtime.topic_keys import TopicKeys

__all__ = ["actions_app", "answer", "read_ledger"]

actions_app = typer.Typer(help="Remediation decisions: list them, approve or reject pending ones.", no_args_is_help=True)

_ENV = "WATCHKEEPER_"
Bootstrap = Annotated[str, typer.Option(envvar=_ENV + "KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")]
AuditTopic = Annotated[str, typer.Option(envvar=_ENV + "TOPIC_AUDIT", help="The audit topic.")]
By = Annotated[Optional[str], typer.Option(help="Who answers (default: user@host).")]
Reason = Annotated[str, typer.Option(help="Why, for the audit trail.")]
KeysFile = Annotated[
    str,
    typer.Option(
        envvar=_ENV + "TOPIC_KEYS_FILE",
        help="The agents' topic key file (signs approvals; default: $XDG_STATE_HOME/watchkeeper/topic-keys).",
    ),
]


async def read_ledger(bootstrap: str, topic: str, *, keys: TopicKeys, security: Any = None, timeout_s: float = 15.0) -> Ledger:
    """The ledger as every agent rebuilds it, from the whole audit topic (signed records only)."""
    from actions.ledger import Ledger
    from agent.runtime.audit_log import read_audit

    ledger = Ledger(max_recent=100_000)
    ledger.apply_all(await read_audit(bootstrap, topic, keys=keys, security=security, timeout_s=timeout_s))
    return ledger


async def answer(
    bootstrap: str,
    topic: str,
    request_id: str,
    *,
    by: str,
    approve: bool,
    keys: TopicKeys,
    reason: str = "",
    security: Any = None,
) -> AuditRecord:
    """Publish the approval (or rejection) of a pending request, signed; ``WatchkeeperError`` if none waits."""
    from actions.audit import answer_request
    from agent.runtime.audit_log import publish_record

    ledger = await read_ledger(bootstrap, topic, keys=keys, security=security)
    request = ledger.find_pending(request_id)
    if request is None:
        raise WatchkeeperError(
            f"no pending request {request_id!r} on {topic} (it may have been answered, executed or expired; "
            "`watchkeeper actions list --pending` shows what waits)"
        )
    if request.approved is not None:
        raise WatchkeeperError(f"request {request.id} was already approved by {request.approved.agent}")
    record = answer_request(request.record, by=by, approve=approve, ts=time.time(), reason=reason)
    await publish_record(bootstrap, topic, record, keys=keys, security=security)
    return record


def _security() -> Any:
    from agent.config import kafka_security_from_env

    return kafka_security_from_env()


def _keys(path: str) -> TopicKeys:
    """The key file's keys; a missing or bad file is a one-line error naming it (never a key)."""
    from agent.runtime.topic_keys import default_keys_path, load_keys

    try:
        return load_keys(path or default_keys_path())
    except WatchkeeperError as exc:
        typer.echo(f"watchkeeper: {exc}", err=True)
        raise typer.Exit(1) from None


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _run(coro: Any) -> Any:
    from agent.logs import configure_logging

    configure_logging("warning", json=False)
    try:
        return asyncio.run(coro)
    except (WatchkeeperError, TimeoutError, OSError, ValueError) as exc:
        typer.echo(f"watchkeeper: {exc}", err=True)
        raise typer.Exit(1) from None


@actions_app.command("list")
def list_actions(
    kafka_bootstrap: Bootstrap,
    topic_audit: AuditTopic = "watchkeeper.audit",
    pending: Annotated[bool, typer.Option("--pending", help="Only requests waiting for approval.")] = False,
    since: Annotated[str, typer.Option(help="How far back, e.g. 30m, 1h, 7d.")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one audit record each.")] = False,
    topic_keys_file: KeysFile = "",
) -> None:
    """Recent remediation decisions and the requests waiting for approval."""
    from agent.duration import parse_duration

    try:
        window_s = parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    ledger = _run(read_ledger(kafka_bootstrap, topic_audit, keys=_keys(topic_keys_file), security=_security()))
    waiting = [p.record for p in ledger.waiting()]
    cutoff = time.time() - window_s
    recent = [r for r in ledger.recent if r.ts >= cutoff]
    if as_json:
        for record in waiting if pending else recent:
            typer.echo(json.dumps(record.to_dict(), separators=(",", ":")))
        return
    if not pending:
        typer.echo(f"Decisions in the last {since} ({len(recent)}):")
        typer.echo(_table(recent, ("TIME", "OUTCOME", "ACTION", "TARGET", "ALERT", "MODE", "ID", "REASON")) if recent else "  none")
        typer.echo("")
    typer.echo(f"Pending approval ({len(waiting)}):")
    typer.echo(_table(waiting, ("TIME", "ID", "ACTION", "TARGET", "ALERT", "REASON")) if waiting else "  none")


def _cell(record: AuditRecord, column: str) -> str:
    if column == "TIME":
        return datetime.fromtimestamp(record.ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    if column == "OUTCOME":
        return record.outcome + (f" ({record.guard})" if record.guard else "")
    if column == "ALERT":
        series = ",".join(f"{k}={v}" for k, v in record.labels.items() if k not in ("alertname", "severity", "team"))
        return f"{record.alertname}{{{series}}}"
    if column == "ID":
        return record.id[:12]
    if column == "REASON":
        return record.reason[:80]
    return str(getattr(record, column.lower()))


def _table(records: Sequence[AuditRecord], columns: Sequence[str]) -> str:
    rows = [list(columns)] + [[_cell(r, c) for c in columns] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _answer_command(approve: bool, doc: str) -> Callable[..., None]:
    """``approve`` and ``reject`` are one command with two verbs."""

    def command(
        request_id: Annotated[str, typer.Argument(metavar="ID", help="The pending request's id (or a unique prefix).")],
        kafka_bootstrap: Bootstrap,
        topic_audit: AuditTopic = "watchkeeper.audit",
        by: By = None,
        reason: Reason = "",
        topic_keys_file: KeysFile = "",
    ) -> None:
        security = _security()
        keys = _keys(topic_keys_file)
        record = _run(
            answer(kafka_bootstrap, topic_audit, request_id, by=_who(by), approve=approve, keys=keys, reason=reason, security=security)
        )
        verb = "approved" if approve else "rejected"
        typer.echo(f"{verb} {record.request_id}: {record.action} on {record.target} for {record.alertname} ({record.reason})")

    command.__doc__ = doc
    return command


actions_app.command("approve")(
    _answer_command(True, "Approve a pending remediation: the agent that asked re-plans and executes it.")
)
actions_app.command("reject")(
    _answer_command(False, "Reject a pending remediation: it is recorded as skipped by the approval guard.")
)
