"""``watchkeeper dcgm-poll``: NVIDIA DCGM exporter series from Prometheus -> ``gpu`` events on Kafka.

For clusters whose GPUs Prometheus already scrapes (dcgm-exporter), this is the
producer of the ``gpu`` topic: every ``--interval`` one instant query through
:class:`agent.runtime.dcgm.DcgmPoller`, each GPU (or MIG instance) one event keyed by
its node. A Prometheus that cannot be reached is logged and tried again at the next
interval, never fatal; so is a poll whose events Kafka did not take (GPU samples are
gauges: the next poll carries fresh ones). Each poll logs one line: what it published,
or why it failed, and counts it in /metrics (``watchkeeper_dcgm_polls_total{outcome}``;
alert on ``time() - watchkeeper_dcgm_last_success_timestamp_seconds``). /readyz is
ready once a poll has been published. ``--once`` polls once and exits, non-zero
when the poll or the publish failed (for cron jobs and tests). SIGTERM and SIGINT
stop it after the current poll, with the producer flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.errors import WatchkeeperError

__all__ = ["dcgm_poll"]

_ENV = "WATCHKEEPER_"
_NODE_LABELS = "node,Hostname,instance"


def dcgm_poll(
    prometheus_url: Annotated[str, typer.Option(envvar=_ENV + "PROMETHEUS_URL", help="Prometheus base URL, e.g. http://prometheus:9090.")],
    kafka_bootstrap: Annotated[str, typer.Option(envvar=_ENV + "KAFKA_BOOTSTRAP", help="Kafka bootstrap servers, host:port[,host:port].")],
    match: Annotated[str, typer.Option(envvar=_ENV + "DCGM_MATCH", help='Extra PromQL label matchers, e.g. \'job="dcgm-exporter", cluster="eu-1"\'.')] = "",
    interval: Annotated[float, typer.Option(envvar=_ENV + "DCGM_INTERVAL_S", help="Seconds between polls.")] = 15.0,
    timeout: Annotated[float, typer.Option(envvar=_ENV + "DCGM_TIMEOUT_S", help="Seconds one Prometheus query may take.")] = 10.0,
    node_labels: Annotated[str, typer.Option("--node-labels", "--node-label", envvar=_ENV + "DCGM_NODE_LABELS", help="Labels naming a GPU's node, first present wins, comma-separated.")] = _NODE_LABELS,
    prometheus_token_file: Annotated[str, typer.Option(envvar=_ENV + "PROMETHEUS_TOKEN_FILE", help="File holding a bearer token for Prometheus.")] = "",
    insecure_skip_verify: Annotated[bool, typer.Option(envvar=_ENV + "PROMETHEUS_INSECURE_SKIP_VERIFY", help="Do not verify Prometheus' TLS certificate.")] = False,
    topic_gpu: Annotated[str, typer.Option(envvar=_ENV + "TOPIC_GPU", help="Topic the gpu events go to.")] = "watchkeeper.gpu",
    once: Annotated[bool, typer.Option("--once", help="Poll once, publish, exit (non-zero if that failed).")] = False,
    http_addr: Annotated[str, typer.Option(envvar=_ENV + "DCGM_HTTP_ADDR", help="Listen address for /metrics, /healthz, /readyz (not with --once; empty: none).")] = "0.0.0.0:9465",
    log_level: Annotated[str, typer.Option(envvar=_ENV + "LOG_LEVEL")] = "info",
    log_json: Annotated[bool, typer.Option(envvar=_ENV + "LOG_JSON", help="JSON log lines (else human-readable).")] = True,
) -> None:
    """Poll Prometheus for NVIDIA DCGM exporter series and publish them as gpu events.

    Kafka security comes from the same WATCHKEEPER_KAFKA_* variables as `run`.
    """
    from agent.config import kafka_security_from_env, parse_urls
    from agent.errors import ConfigError
    from agent.logs import configure_logging

    try:
        configure_logging(log_level, json=log_json)
        urls = parse_urls(prometheus_url, _ENV + "PROMETHEUS_URL")
        if len(urls) != 1:
            raise ConfigError("give one Prometheus URL", _ENV + "PROMETHEUS_URL")
        for name, value in (("interval", interval), ("timeout", timeout)):
            if not value > 0:
                raise ConfigError(f"--{name} must be > 0 seconds, got {value:g}")
        labels = tuple(n.strip() for n in node_labels.split(",") if n.strip())
        if not labels:
            raise ConfigError("--node-labels names no label", _ENV + "DCGM_NODE_LABELS")
        if not topic_gpu:
            raise ConfigError("the gpu topic name is empty", _ENV + "TOPIC_GPU")
        headers = {}
        if prometheus_token_file:
            token = Path(prometheus_token_file).read_text(encoding="utf-8").strip()
            headers["Authorization"] = f"Bearer {token}"
        settings = _Settings(
            prometheus_url=urls[0], bootstrap=kafka_bootstrap, security=kafka_security_from_env(), match=match,
            interval_s=interval, timeout_s=timeout, node_labels=labels, headers=headers,
            insecure=insecure_skip_verify, topic=topic_gpu, http_addr=http_addr,
        )  # fmt: skip
        ok = asyncio.run(_poll_once(settings) if once else _poll_forever(settings))
    except (WatchkeeperError, ValueError, OSError) as exc:
        typer.echo(f"watchkeeper: {exc}", err=True)
        raise typer.Exit(1) from None
    if not ok:
        raise typer.Exit(1)


@dataclass(frozen=True)
class _Settings:
    """What one dcgm-poll process needs, validated by the command."""

    prometheus_url: str
    bootstrap: str
    security: Any
    match: str
    interval_s: float
    timeout_s: float
    node_labels: tuple[str, ...]
    headers: dict[str, str]
    insecure: bool
    topic: str
    http_addr: str = ""


def _poller(s: _Settings) -> Any:
    from agent.runtime.dcgm import DcgmPoller

    return DcgmPoller(
        s.prometheus_url, match=s.match, node_labels=s.node_labels, timeout_s=s.timeout_s,
        headers=s.headers, disable_ssl=s.insecure,
    )  # fmt: skip


def _producer(s: _Settings) -> Any:
    from aiokafka import AIOKafkaProducer
    from faststream.kafka.security import parse_security

    if not s.bootstrap:
        from agent.errors import ConfigError

        raise ConfigError("Kafka bootstrap servers are empty", _ENV + "KAFKA_BOOTSTRAP")
    return AIOKafkaProducer(bootstrap_servers=s.bootstrap, acks="all", **parse_security(s.security))


async def _publish(producer: Any, topic: str, events: list[dict[str, Any]]) -> None:
    """Send every event keyed by its node; return once the broker acknowledged all of them."""
    pending = [
        await producer.send(topic, value=json.dumps(e, separators=(",", ":")).encode(), key=str(e["node"]).encode())
        for e in events
    ]
    await asyncio.gather(*pending)


def _poll_errors() -> tuple[type[Exception], ...]:
    """What a failed Prometheus query raises (as ``DcgmPoller.run`` catches them)."""
    from prometheus_api_client import PrometheusApiClientException
    from requests import RequestException

    return (RequestException, PrometheusApiClientException, ValueError, KeyError)


class _Run:
    """One poller and one lazily started producer; :meth:`poll` never raises.

    A producer that failed to start is replaced at the next poll (aiokafka's cannot
    be restarted); one poll's events are sent together and acknowledged before the
    poll counts as published.
    """

    def __init__(self, s: _Settings) -> None:
        from agent.logs import get_logger

        self.s = s
        self.poller = _poller(s)
        self.log = get_logger("agent.dcgm_cli")
        self._producer: Any = None
        self.publish_failures = 0
        self.published_polls = 0
        self.metrics = _Metrics()

    async def poll(self) -> bool:
        """Query Prometheus, publish the events; False (and a log line) when either failed."""
        s = self.s
        try:
            events = await self.poller.poll_once()
        except _poll_errors() as exc:
            self.poller.failures += 1
            self.metrics.polls.labels("query_failed").inc()
            self.log.error("dcgm poll failed", prometheus=s.prometheus_url, error=f"{type(exc).__name__}: {exc}")
            return False
        try:
            if self._producer is None:
                producer = _producer(s)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            await _publish(self._producer, s.topic, events)
        except Exception as exc:  # noqa: BLE001 - the next poll brings fresh samples; report and go on
            self.publish_failures += 1
            self.metrics.polls.labels("publish_failed").inc()
            self.log.error("dcgm events not published", topic=s.topic, events=len(events), error=f"{type(exc).__name__}: {exc}")
            return False
        self.poller.published += len(events)
        self.published_polls += 1
        self.metrics.polls.labels("ok").inc()
        self.metrics.events.inc(len(events))
        self.metrics.skipped.set(len(self.poller.last_skipped))
        self.metrics.last_success.set_to_current_time()
        self.log.info("dcgm poll published", topic=s.topic, events=len(events), skipped=len(self.poller.last_skipped))
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


async def _poll_once(s: _Settings) -> bool:
    run = _Run(s)
    try:
        return await run.poll()
    finally:
        await run.close()


async def _poll_forever(s: _Settings) -> bool:
    """Poll every interval until SIGTERM/SIGINT; a failed poll is logged and the next one comes on time."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = _Run(s)
    poller = run.poller
    http = None
    if s.http_addr:
        from agent.runtime.http import HttpServer

        def ready() -> tuple[bool, str]:
            return run.published_polls > 0, "" if run.published_polls else "no poll published yet"

        http = HttpServer(s.http_addr, run.metrics.registry, ready)
        await http.start()
    run.log.info("dcgm poller started", prometheus=s.prometheus_url, query=poller.query, interval_s=s.interval_s,
                 topic=s.topic, http_port=http.port if http else None)  # fmt: skip
    try:
        while not stop.is_set():
            started = loop.time()
            await run.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, s.interval_s - (loop.time() - started)))
    finally:
        await run.close()
        if http is not None:
            await http.stop()
        run.log.info("dcgm poller stopped", polls=poller.polls, query_failures=poller.failures,
                     events=poller.published, publish_failures=run.publish_failures)  # fmt: skip
    return True


class _Metrics:
    """The poller's own metrics, on its own registry (served at /metrics)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.polls = Counter(
            "watchkeeper_dcgm_polls", "DCGM polls by outcome: ok, query_failed, publish_failed.", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        for outcome in ("ok", "query_failed", "publish_failed"):
            self.polls.labels(outcome)
        self.events = Counter("watchkeeper_dcgm_events_published", "gpu events published.", registry=self.registry)
        self.skipped = Gauge("watchkeeper_dcgm_gpus_skipped", "GPUs the last poll could not map (see the log).", registry=self.registry)
        self.last_success = Gauge(
            "watchkeeper_dcgm_last_success_timestamp_seconds", "When a poll was last published.", registry=self.registry
        )
