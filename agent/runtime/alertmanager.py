"""Deliver alerts to Alertmanager (API v2) the way Prometheus' notifier does.

Two choices are copied from Prometheus on purpose, so that an SRE's Alertmanager
behaves the same whether Prometheus or Watchkeeper sent the alert.

**Every Alertmanager gets every alert, and one acceptance is enough.** The replicas
of an HA Alertmanager cluster deduplicate notifications among themselves by gossip;
the sender only has to reach one of them. Requiring all of them would turn one
replica being down into no page at all, which is the failure HA exists to prevent;
sending to one of them only would lose the alert if that replica died before it
gossiped. So :meth:`AlertmanagerClient.send` posts to all of them concurrently and
succeeds when any one answered 2xx; the others are counted and logged, not raised.

**startsAt is event time; endsAt of a firing alert is wall time.** ``startsAt`` is
when the problem began, which only the events know: a late or replayed batch must
not move it. ``endsAt`` of a firing alert is a lease instead: ``now + 4 x resend
interval``. The caller re-sends firing alerts every interval and so keeps pushing the
lease forward; if the agent dies, the lease runs out and Alertmanager resolves the
alert by itself rather than paging forever about something nobody watches any more.
Only Alertmanager's clock can judge a lease, so it has to be wall time. Four
intervals survive a few lost resends, as Prometheus' ``ValidUntil = ts + 4 * delta``
does. A resolved alert's ``endsAt`` is its ``resolved_at``: the problem ended then.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import httpx

from agent.errors import DeliveryError
from agent.logs import get_logger
from agent.model import Alert, AlertState
from agent.runtime.selfmetrics import SelfMetrics

__all__ = ["AlertmanagerClient"]

_API_PATH = "/api/v2/alerts"
_SENT_STATES = frozenset({AlertState.FIRING, AlertState.RESOLVED})
_LEASE_RESENDS = 4
# Alertmanager answers 400 when it validated the alerts and refused (some of) them:
# the same bytes will be refused again, so retrying them only blocks later alerts.
_REJECTED = frozenset({400, 413, 422})

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one Alertmanager said to one post."""

    url: str
    error: str | None = None  # None means accepted (2xx)
    rejected: bool = False  # the payload itself was refused; retrying cannot help


def _rfc3339(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_url(url: str, what: str) -> httpx.URL:
    """Parse ``url`` or raise a ValueError that says what a good one looks like."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"{what} {url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(
            f"{what} {url!r} must be an absolute http:// or https:// URL, "
            "for example 'http://alertmanager:9093'"
        )
    if parsed.userinfo:
        raise ValueError(
            f"{what} {url!r} contains credentials; pass them as headers "
            "(e.g. Authorization) so they stay out of logs and metric labels"
        )
    return parsed


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class AlertmanagerClient:
    """Posts alerts to every configured Alertmanager and retries with backoff.

    Parameters
    ----------
    urls
        Base URLs of the Alertmanagers, e.g. ``http://alertmanager:9093``. The path
        ``/api/v2/alerts`` is appended unless a URL already ends with it. List every
        replica of an HA cluster; they are not load-balanced, each gets every alert.
    metrics
        Where ``alertmanager_sends``, ``alertmanager_send_failures`` and
        ``alertmanager_pending`` are counted.
    timeout_s
        Timeout of one post, in seconds.
    resend_interval_s
        How often the caller re-sends firing alerts, in seconds. Firing alerts get
        ``endsAt = now + 4 * resend_interval_s``.
    generator_url
        A link back to this agent, sent as ``generatorURL`` with the rule id added as
        a ``rule`` query parameter. Empty sends an empty ``generatorURL``.
    transport
        The httpx transport; tests pass ``httpx.MockTransport``.
    headers
        Extra request headers such as ``Authorization``. The caller reads secrets;
        this module never reads the environment.
    clock
        Wall clock in epoch seconds; only the lease of firing alerts reads it.
    seed
        Seeds the backoff jitter, so a retry schedule can be reproduced.

    Examples
    --------
    >>> from agent.model import Alert, AlertState
    >>> client = AlertmanagerClient(
    ...     ["http://alertmanager:9093"], metrics=SelfMetrics(), clock=lambda: 1000.0,
    ...     resend_interval_s=60.0, generator_url="http://watchkeeper:9108/rules")
    >>> alert = Alert(
    ...     fingerprint="3f2a", rule_id="payments/HighP99Latency", state=AlertState.FIRING,
    ...     labels={"alertname": "HighP99Latency"}, annotations={}, active_at=700.0,
    ...     value=0.93, fired_at=760.0)
    >>> body = client.payload([alert])
    >>> body[0]["startsAt"], body[0]["endsAt"]
    ('1970-01-01T00:12:40.000Z', '1970-01-01T00:20:40.000Z')
    >>> body[0]["generatorURL"]
    'http://watchkeeper:9108/rules?rule=payments%2FHighP99Latency'
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        metrics: SelfMetrics,
        timeout_s: float = 5.0,
        resend_interval_s: float = 60.0,
        generator_url: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if isinstance(urls, str):
            raise ValueError("urls must be a list of Alertmanager URLs, not one string")
        if not urls:
            raise ValueError("at least one Alertmanager URL is needed, e.g. 'http://alertmanager:9093'")
        for name, value in (("timeout_s", timeout_s), ("resend_interval_s", resend_interval_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self._endpoints: dict[str, str] = {}
        for url in urls:
            parsed = _check_url(url, "Alertmanager URL")
            endpoint = str(parsed).rstrip("/")
            if not endpoint.endswith(_API_PATH):
                endpoint += _API_PATH
            if endpoint in self._endpoints.values():
                raise ValueError(f"Alertmanager URL {url!r} is listed twice")
            self._endpoints[url] = endpoint
        if generator_url:
            _check_url(generator_url, "generator_url")
        self.urls: tuple[str, ...] = tuple(urls)
        self.timeout_s = timeout_s
        self.resend_interval_s = resend_interval_s
        self.generator_url = generator_url
        self.seed = seed
        self._metrics = metrics
        self._clock = clock
        self._rng = random.Random(seed)
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout_s, headers=dict(headers or {})
        )

    def payload(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        """The API v2 body for ``alerts``: firing and resolved ones only, in order.

        Pending and inactive alerts are left out, as Prometheus never sends them.
        """
        now = self._clock()
        lease_s = _LEASE_RESENDS * self.resend_interval_s
        body: list[dict[str, Any]] = []
        for alert in alerts:
            if alert.state not in _SENT_STATES:
                continue
            starts = alert.fired_at if alert.fired_at is not None else alert.active_at
            if alert.state is AlertState.FIRING:
                # An event time ahead of our clock must still give endsAt >= startsAt,
                # or Alertmanager rejects the alert as invalid.
                ends = max(now, starts) + lease_s
            else:
                resolved = alert.resolved_at if alert.resolved_at is not None else now
                ends = max(resolved, starts)
            body.append(
                {
                    "labels": {str(k): str(v) for k, v in alert.labels.items()},
                    "annotations": {str(k): str(v) for k, v in alert.annotations.items()},
                    "startsAt": _rfc3339(starts),
                    "endsAt": _rfc3339(ends),
                    "generatorURL": self._generator_url(alert.rule_id),
                }
            )
        return body

    async def send(self, alerts: Sequence[Alert]) -> None:
        """Post ``alerts`` to every Alertmanager at once; fine if at least one accepts.

        Raises :class:`DeliveryError` naming each URL and what it answered when none
        accepted. Nothing is posted when no alert is firing or resolved.
        """
        body = self.payload(alerts)
        if not body:
            return
        outcomes = await self._post_all(body)
        if not any(o.error is None for o in outcomes):
            raise self._error(outcomes, len(body))

    async def deliver(
        self,
        alerts: Sequence[Alert],
        *,
        stop: asyncio.Event | None = None,
        max_attempts: int | None = None,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
    ) -> bool:
        """Send ``alerts`` until an Alertmanager accepts them; True once one has.

        Waits between attempts use exponential backoff with full jitter (uniform in
        ``[0, min(max_delay_s, base_delay_s * 2**(attempt - 1))]``), so agents that lost
        Alertmanager together do not come back in lockstep. Returns False when ``stop``
        is set, after ``max_attempts`` failed attempts, or at once when every
        Alertmanager refused the payload as invalid (HTTP 400, 413, 422), because the
        same bytes would be refused again. The first attempt is made even if ``stop``
        is already set, so a final flush at shutdown still gets one try. Each failed
        attempt is logged once. The payload is rebuilt per attempt, so a retried
        firing alert carries a fresh lease.
        """
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 (or None), got {max_attempts}")
        if not (0 <= base_delay_s <= max_delay_s):
            raise ValueError(
                f"need 0 <= base_delay_s <= max_delay_s, got {base_delay_s} and {max_delay_s}"
            )
        count = sum(1 for a in alerts if a.state in _SENT_STATES)
        if count == 0:
            return True
        self._metrics.alertmanager_pending.inc(count)
        try:
            attempt = 0
            while True:
                attempt += 1
                outcomes = await self._post_all(self.payload(alerts))
                if any(o.error is None for o in outcomes):
                    return True
                error = str(self._error(outcomes, count))
                if all(o.rejected for o in outcomes):
                    _log.error("alertmanager rejected alerts; dropping them", attempt=attempt, error=error)
                    return False
                exhausted = max_attempts is not None and attempt >= max_attempts
                if exhausted or (stop is not None and stop.is_set()):
                    _log.error("alertmanager delivery abandoned", attempt=attempt, error=error)
                    return False
                ceiling_s = min(max_delay_s, base_delay_s * 2.0 ** min(attempt - 1, 32))
                delay_s = self._rng.uniform(0.0, ceiling_s)
                _log.warning(
                    "alertmanager delivery failed; retrying",
                    attempt=attempt,
                    retry_in_s=round(delay_s, 3),
                    error=error,
                )
                if await _wait(stop, delay_s):
                    _log.warning("alertmanager delivery stopped before it succeeded", attempt=attempt)
                    return False
        finally:
            self._metrics.alertmanager_pending.dec(count)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def __aenter__(self) -> AlertmanagerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _generator_url(self, rule_id: str) -> str:
        if not self.generator_url:
            return ""
        return str(httpx.URL(self.generator_url).copy_merge_params({"rule": rule_id}))

    async def _post_all(self, body: list[dict[str, Any]]) -> list[_Outcome]:
        outcomes = list(
            await asyncio.gather(*(self._post(url, body) for url in self._endpoints))
        )
        failed = {o.url: o.error for o in outcomes if o.error is not None}
        if failed and len(failed) < len(outcomes):
            _log.warning("some alertmanagers did not accept alerts", failed=failed)
        return outcomes

    async def _post(self, url: str, body: list[dict[str, Any]]) -> _Outcome:
        try:
            response = await self._client.post(self._endpoints[url], json=body)
        except httpx.HTTPError as exc:
            outcome = _Outcome(url, _describe(exc))
        else:
            if response.is_success:
                outcome = _Outcome(url)
            else:
                detail = response.text.strip()[:200]
                message = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
                outcome = _Outcome(url, message, rejected=response.status_code in _REJECTED)
        ok = outcome.error is None
        self._metrics.alertmanager_sends.labels(url=url, outcome="ok" if ok else "error").inc()
        if not ok:
            self._metrics.alertmanager_send_failures.labels(url=url).inc()
        return outcome

    @staticmethod
    def _error(outcomes: Sequence[_Outcome], count: int) -> DeliveryError:
        answers = "; ".join(f"{o.url}: {o.error}" for o in outcomes)
        return DeliveryError(
            f"no Alertmanager accepted {count} alert(s): {answers}; "
            "check that the URLs are right and Alertmanager is reachable from the agent"
        )


async def _wait(stop: asyncio.Event | None, delay_s: float) -> bool:
    """Wait ``delay_s`` seconds; True if ``stop`` was set first."""
    if stop is None:
        await asyncio.sleep(delay_s)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay_s)
    except TimeoutError:
        return False
    return True
