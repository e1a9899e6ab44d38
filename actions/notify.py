"""``notify``: post a message about a firing alert to an extra webhook (a Slack incoming webhook).

For a remediation channel next to the pages Alertmanager sends: the message is
Slack-compatible JSON (``text`` plus one attachment), which most chat webhooks accept.
Label and annotation values are escaped (:mod:`actions.slack_text`): a producer cannot
make the message link, mention ``@channel``, format or add lines.
The URL is a secret (a Slack webhook URL carries its token), so a rule names the
environment variable that holds it (``url_env``) rather than the URL itself; a literal
``url`` is accepted for internal endpoints that need no secret.

The target is the webhook and the alert (``webhook/<url_env>/<fingerprint>``), so the
cooldown and budgets limit messages per alert, not per channel. ``plan`` reads nothing;
``apply`` posts once: 5xx, 429 and connection errors are retried by the runtime, other
4xx answers are final.

Example rule entry::

    actions:
      - type: notify
        url_env: WATCHKEEPER_REMEDIATION_WEBHOOK_URL
        channel: "#ml-remediation"
        mode: enforce
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from pydantic import Field, model_validator

from agent.model import Alert

from .base import Action, ActionFailed, ActionParams, Plan, Target, TransientActionError
from .slack_text import escape_value

__all__ = ["Notify", "NotifyParams"]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class NotifyParams(ActionParams):
    """Where to post and what to add to the message.

    Parameters
    ----------
    url_env
        Name of the environment variable holding the webhook URL (recommended).
    url
        The webhook URL itself, for endpoints whose URL is not a secret.
    channel, username
        Slack overrides, sent when set.
    text
        A sentence added to the message (what the on-call should know or do).
    timeout_s
        Time allowed for one post.
    """

    url_env: str | None = Field(None, pattern=_ENV_NAME)
    url: str | None = None
    channel: str | None = None
    username: str | None = None
    text: str | None = None
    timeout_s: float = Field(10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_destination(self) -> NotifyParams:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("notify needs exactly one of url_env (recommended) or url")
        if self.url is not None:
            parsed = urlparse(self.url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"url {self.url!r} is not an http(s) URL")
        return self


class Notify(Action):
    """Posts one message per alert incident to a webhook."""

    kind = "notify"
    Params = NotifyParams
    params: NotifyParams

    def _destination(self) -> str:
        """A name for the webhook that is safe to log and audit (never the secret URL)."""
        if self.params.url_env:
            return self.params.url_env
        assert self.params.url is not None
        parsed = urlparse(self.params.url)
        return f"{parsed.hostname}-{hashlib.sha256(self.params.url.encode()).hexdigest()[:8]}"

    def _url(self) -> str | None:
        if self.params.url is not None:
            return self.params.url
        env: Mapping[str, str] = self.context.extra.get("env") or {}
        return env.get(self.params.url_env or "") or None

    def target(self, alert: Alert) -> Target:
        return Target("webhook", f"{self._destination()}/{alert.fingerprint}")

    async def plan(self, alert: Alert, target: Target) -> Plan:
        message = self.message(alert)
        where = self._destination()
        missing = "" if self._url() else " (not set: the post would fail)"
        return Plan(
            target=target,
            before={},
            after={"webhook": where, "text": message["text"]},
            reason=f"post about {alert.name} to {where}{missing}",
        )

    async def apply(self, plan: Plan, alert: Alert) -> Mapping[str, Any]:
        url = self._url()
        if url is None:
            raise ActionFailed(f"environment variable {self.params.url_env} (the notify action's url_env) is not set")
        import httpx

        client = self.context.http
        owned = client is None
        if owned:
            client = httpx.AsyncClient()
        try:
            response = await client.post(url, json=self.message(alert), timeout=self.params.timeout_s)
        except httpx.HTTPError as exc:
            raise TransientActionError(f"post to {self._destination()} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if owned:
                await client.aclose()
        where = self._destination()
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientActionError(f"{where} answered {response.status_code}")
        if response.status_code >= 400:
            raise ActionFailed(f"{where} refused the message: {response.status_code} {response.text[:200]}")
        return {"webhook": where, "status": response.status_code}

    def message(self, alert: Alert) -> dict[str, Any]:
        """The Slack-compatible body: a one-line ``text`` and an attachment with the details.

        Every label and annotation value (and the alert's name) is untrusted: it goes
        through :func:`actions.slack_text.escape_value`, and mrkdwn is off, so a value
        shows as typed and can neither link, mention, format nor add a line. The rule's
        own ``text`` is the rule author's and is left as written.
        """
        esc = escape_value
        series = ", ".join(f"{esc(k)}={esc(v)}" for k, v in sorted(alert.labels.items()) if k != "alertname")
        summary = alert.annotations.get("summary", "")
        since = datetime.fromtimestamp(alert.active_at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines = [f"[{alert.state.value.upper()}] {esc(alert.name)} {{{series}}}"]
        if summary:
            lines.append(esc(summary))
        if self.params.text:
            lines.append(self.params.text)
        details = [f"fingerprint: {esc(alert.fingerprint)}", f"active since: {since}"]
        details += [f"{esc(k)}: {esc(v)}" for k, v in sorted(alert.annotations.items()) if k != "summary" and v]
        attachment = {
            "title": f"{esc(alert.name)} ({esc(alert.rule_id)})",
            "text": "\n".join(details),
            "color": "danger",
            "mrkdwn_in": [],
        }
        body: dict[str, Any] = {"text": "\n".join(lines), "mrkdwn": False, "attachments": [attachment]}
        if self.params.channel:
            body["channel"] = self.params.channel
        if self.params.username:
            body["username"] = self.params.username
        return body
