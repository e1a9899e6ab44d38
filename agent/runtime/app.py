"""One running agent: the FastStream broker, its two subscribers, and the clockwork around them.

* the event subscriber (group ``watchkeeper``) parses batches, runs the pipeline and
  publishes the effects before its offsets are committed;
* the notifier subscriber (group ``watchkeeper.notifier``) moves alert transitions from
  the alerts topic to Alertmanager (or the terminal), committing after delivery;
* the remediation subscriber (group ``watchkeeper.actions``) decides the actions of
  firing alerts and commits after their audit records are durable (``remediation.py``);
* background tasks: advance event time while the stream is quiet, re-send firing
  alerts, hot-reload rules, export consumer lag;
* an HTTP server for /metrics, /healthz and /readyz.

Every handler's exception is logged (type, message and stack, never local variables)
before FastStream sees it: the broker itself is built without a logger. An event
partition whose batch keeps failing is reported stalled (``stall.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from agent.config import AgentConfig
from agent.logs import get_logger
from agent.model import Alert, AlertState
from agent.rules import RuleSet, load_rules
from agent.rules.pricing import PriceTable

from .approvers import Approvers
from .arrival import ArrivalMarks
from .http import HttpServer
from .checkpoint_store import CheckpointStore
from .fleet import FleetMember
from .heap import freeze_startup_heap
from .ingest import BatchProcessor, PositionLog, describe_exception, describe_stack, publish_alerts, publish_outcome
from .notifier import AlertSink, decode_alerts
from .reports import DriftReports
from .pipeline import Pipeline
from .remediation import Remediation
from .reload import RuleReloader
from .selfmetrics import SelfMetrics
from .series_report import SeriesReport
from .signing import RecordAuth, TopicRole
from .topic_keys import open_keys
from .stall import StallWatch
from .topics import create_topics

__all__ = ["AgentApp"]

_log = get_logger(__name__)


async def _logged(handler: str, work: Awaitable[None]) -> None:
    """Await a handler's work; log any exception (no local variables) before FastStream NACKs.

    The broker is built with ``logger=None`` (its own lines would carry tracebacks with
    locals): without this, a failing handler would be redelivered for ever in silence.
    """
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        _log.error(
            "handler failed; its batch will be redelivered",
            handler=handler,
            error=describe_exception(exc),
            traceback=describe_stack(exc),
        )
        raise


async def _raw_records(msg: Any) -> Any:
    """Hand the handler aiokafka's records untouched: we parse the bytes ourselves."""
    return msg.raw_message


class AgentApp:
    """Wires config, pipeline, broker, sink and HTTP together; ``start`` / ``stop``."""

    def __init__(
        self,
        config: AgentConfig,
        sink: AlertSink,
        *,
        metrics: SelfMetrics | None = None,
        rules: RuleSet | None = None,
        on_transition: Callable[[Alert], None] | None = None,
        serve_http: bool = True,
        on_audit: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics or SelfMetrics()
        self.prices = PriceTable.load(config.prices_file) if config.prices_file else None
        self.rules = rules if rules is not None else load_rules(config.rules, self.prices)
        self.pipeline = Pipeline(
            self.rules,
            max_series=config.max_series,
            staleness_s=config.staleness_s,
            max_lateness_s=config.max_lateness_s,
            limits=config.series_limits,
        )
        self.series_report = SeriesReport(self.metrics)
        self.metrics.rules_loaded.set(len(self.rules))
        self.metrics.rules_last_reload_ok.set(1)
        self._on_transition = on_transition
        self._stopping = asyncio.Event()
        self._started = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._last_batch_wall = time.monotonic()
        self._unsent: list[Alert] = []
        self._positions = PositionLog(config.processed_log) if config.processed_log else None
        # the key that signs (and verifies) the alerts, audit and state topics (signing.py)
        self.topic_keys = open_keys(config.topic_keys_file)
        self.alerts_auth = RecordAuth(self.topic_keys, TopicRole.ALERTS, topic=config.topics.alerts, metrics=self.metrics)
        self.processor = BatchProcessor(
            pipeline=lambda: self.pipeline,
            metrics=self.metrics,
            max_event_bytes=config.max_event_bytes,
            max_future_s=config.max_future_s,
            topic_sources=config.topics.sources(),
            record_positions=self._positions is not None,
            max_event_skew_s=config.max_event_skew_s or None,
            arrivals=ArrivalMarks() if config.max_event_skew_s else None,
        )
        self.stalls = StallWatch(self.metrics, config.stall_batches)
        self.fleet = FleetMember(
            group=config.kafka.group_id,
            pipeline=lambda: self.pipeline,
            consumer=lambda: getattr(self._event_subscriber, "consumer", None),
            store=CheckpointStore(
                config.kafka.bootstrap, config.state_topic, security=config.kafka.security, keys=self.topic_keys, metrics=self.metrics
            )
            if config.checkpoints
            else None,
            metrics=self.metrics,
            publish=self._publish_alerts,
            interval_s=config.checkpoint_interval_s,
            lag_warn_records=config.lag_warn_records,
            idle_s=config.idle_advance_s,
        )
        self.processor.accept = self.fleet.accept
        self.reloader = RuleReloader(
            config.rules, self._apply_rules, self.metrics, interval_s=config.reload_interval_s, prices=self.prices
        )
        self.broker = self._build_broker()
        self.reports = DriftReports(
            config.report_dir,
            base_url=self._base_url,
            lookup=lambda skey: self.pipeline.engine.series(skey),
            annotate=lambda rule_id, series, extra: self.pipeline.lifecycle.annotate(rule_id, series, extra),
            max_count=config.report_max_count,
            max_bytes=config.report_max_bytes,
            metrics=self.metrics,
        )
        self.remediation = Remediation(
            config,
            self.broker,
            self.metrics,
            rules=lambda: self.rules,
            stopping=self._stopping,
            annotate=lambda rule_id, series, extra: self.pipeline.lifecycle.annotate(rule_id, series, extra),
            on_audit=on_audit,
            keys=self.topic_keys,
        )
        routes = {DriftReports.route: self.reports.serve, **self.remediation.routes()}
        self.approvers = Approvers(config.approvers_file, shorthand=config.actions_approve_token)
        self.http = (
            HttpServer(config.http_addr, self.metrics.registry, self.readiness, routes=routes, authenticator=self.approvers)
            if serve_http
            else None
        )

    # --- wiring -------------------------------------------------------------------------
    def _build_broker(self) -> KafkaBroker:
        cfg = self.config
        broker = KafkaBroker(
            cfg.kafka.bootstrap,
            security=cfg.kafka.security,
            client_id="watchkeeper",
            graceful_timeout=10.0,
            logger=None,
        )
        topics = cfg.topics
        consumer_opts = dict(
            batch=True,
            max_records=cfg.kafka.batch_max_records,
            batch_timeout_ms=cfg.kafka.batch_timeout_ms,
            fetch_max_wait_ms=cfg.kafka.fetch_max_wait_ms,
            auto_offset_reset="earliest",
            session_timeout_ms=cfg.kafka.session_timeout_ms,
            heartbeat_interval_ms=cfg.kafka.heartbeat_interval_ms,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_raw_records,
        )

        # keep the subscriber itself (the decorator returns a call wrapper without a consumer):
        # the lag exporter and the fleet's rebalance listener need its aiokafka consumer
        events = broker.subscriber(
            *topics.sources(), group_id=cfg.kafka.group_id, listener=self.fleet, **consumer_opts
        )

        @events
        async def on_events(records: Any) -> None:
            await self.consume_events(records)

        @broker.subscriber(
            topics.alerts,
            group_id=f"{cfg.kafka.group_id}.notifier",
            max_poll_interval_ms=3_600_000,
            **consumer_opts,
        )
        async def on_alerts(records: Any) -> None:
            await _logged("alerts", self.handle_alerts(records))

        @broker.subscriber(
            topics.alerts,
            group_id=f"{cfg.kafka.group_id}.actions",
            max_poll_interval_ms=3_600_000,
            **consumer_opts,
        )
        async def on_action_alerts(records: Any) -> None:
            await _logged("actions", self.remediation.handle(records))

        self._event_subscriber = events
        return broker

    # --- handlers -----------------------------------------------------------------------
    async def consume_events(self, records: Any) -> None:
        """The event subscriber: ``handle_events``, its failures logged and watched for stalls."""
        try:
            await _logged("events", self.handle_events(records))
        except Exception:
            self.stalls.failed(records)
            raise
        self.stalls.advanced(records)

    async def handle_events(self, records: Any) -> None:
        """Process a batch; publish its effects; return only when they are durable.

        Holds the fleet lock throughout, so a rebalance checkpoints whole batches only.
        """
        async with self.fleet.lock:
            with self.metrics.batch_duration.time():
                outcome = self.processor.process(records)
            self._last_batch_wall = time.monotonic()
            if outcome.transitions:
                outcome.transitions = await self._attach_reports(outcome.transitions)
            try:
                await publish_outcome(
                    self.broker, outcome, dlq_topic=self.config.topics.dlq, alerts_topic=self.config.topics.alerts,
                    auth=self.alerts_auth,
                )
            except Exception:
                # the batch is rewound and processed again, but its alerts already moved (a
                # second pass does not fire what fires already): keep the transitions, the
                # idle-clock round publishes them
                self._unsent.extend(outcome.transitions)
                raise
            if self._positions is not None:
                self._positions.append(outcome.positions)
            self._after_transitions(outcome.transitions)
            await self.fleet.after_batch(outcome.partitions)
            self._note_arrivals(outcome.partitions)

    async def _attach_reports(self, transitions: list[Alert]) -> list[Alert]:
        """Drift reports for the batch's transitions; without them if writing one fails.

        A report is a courtesy: failing the batch for it would redeliver the same records
        (and fail again) for ever.
        """
        try:
            return await self.reports.attach(transitions)
        except Exception as exc:  # noqa: BLE001 - the alerts matter, the report does not
            _log.error("drift reports not written; alerts published without them", error=describe_exception(exc))
            return transitions

    async def handle_alerts(self, records: Any) -> None:
        """Deliver alert transitions; raising makes FastStream rewind and redeliver them."""
        alerts = decode_alerts(r.value for r in self.alerts_auth.admitted(records))  # forged ones are never paged
        if not alerts:
            return
        delivered = await self.sink.deliver(alerts, stop=self._stopping)
        if delivered:
            return
        if self._stopping.is_set():
            raise RuntimeError("alerts not delivered before shutdown; they will be redelivered")
        # Every Alertmanager refused the body as invalid (4xx): retrying cannot help and
        # would hold back every later page. The client logged and counted the refusal.
        _log.error("alerts refused by every Alertmanager; dropped", fingerprints=[a.fingerprint for a in alerts])

    def _after_transitions(self, alerts: list[Alert]) -> None:
        self.fleet.note_transitions(alerts)
        for a in alerts:
            self.metrics.alert_transitions.labels(a.state.value).inc()
            if a.state is AlertState.FIRING:
                self.metrics.findings.labels(a.name).inc()
            if self._on_transition is not None:
                self._on_transition(a)
        counts = self.pipeline.lifecycle.counts()
        for state, n in counts.items():
            self.metrics.alerts.labels(state).set(n)
        self.metrics.series.set(len(self.pipeline.engine))
        engine = self.pipeline.engine
        if engine.evicted:
            self.metrics.series_evicted.inc(engine.evicted)
            engine.evicted = 0
        for kind, seconds in engine.timings:
            self.metrics.detector_update.labels(kind).observe(seconds)
        engine.timings.clear()
        self.series_report.update(self.pipeline)

    def _base_url(self) -> str:
        """Where people reach this agent: the configured external URL, else the listener."""
        if self.config.external_url:
            return self.config.external_url
        if self.http is not None:
            host = self.http.host if self.http.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
            try:
                return f"http://{host}:{self.http.port}"
            except RuntimeError:
                pass
        return ""

    async def _apply_rules(self, rules: RuleSet) -> None:
        async with self.fleet.lock:  # not during a checkpoint or a rebalance
            transitions = self.pipeline.reload(rules)
        self.rules = rules
        await self._publish_alerts(transitions)

    async def _publish_alerts(self, alerts: list[Alert]) -> None:
        """Publish transitions made outside a batch; keep them for the next try on failure."""
        pending = self._unsent + alerts
        self._unsent = []
        if not pending:
            return
        try:
            await asyncio.gather(*publish_alerts(self.broker, pending, self.config.topics.alerts, auth=self.alerts_auth))
        except Exception as exc:  # noqa: BLE001 - any broker error: keep them and retry
            self._unsent = pending
            _log.warning("could not publish alert transitions; will retry", error=str(exc), count=len(pending))
            return
        self._after_transitions(alerts)

    # --- background clockwork ---------------------------------------------------------
    async def _every(self, interval_s: float, step: Callable[[], Awaitable[None]], name: str) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval_s)
            if self._stopping.is_set():
                return
            try:
                await step()
            except Exception:  # noqa: BLE001 - a failed round is logged and retried
                _log.exception("background task failed; retrying", task=name)

    async def _advance_idle_clock(self) -> None:
        """When no events arrive, let event time follow wall time so alerts can resolve."""
        idle = time.monotonic() - self._last_batch_wall
        if idle < self.config.idle_advance_s or self.pipeline.clock == float("-inf"):
            await self._publish_alerts([])
            return
        async with self.fleet.lock:  # never between a revoked partition's checkpoint and its removal
            transitions = self.pipeline.tick(self.pipeline.clock + 1.0)
        await self._publish_alerts(await self._attach_reports(transitions))

    async def _resend_firing(self) -> None:
        """Re-send firing alerts, as Prometheus does, so Alertmanager keeps them alive."""
        firing = self.pipeline.firing()
        if firing:
            await asyncio.gather(*publish_alerts(self.broker, firing, self.config.topics.alerts, auth=self.alerts_auth))

    def _note_arrivals(self, partitions: Any = None) -> None:
        """Record each partition's high-water mark and when it was fetched (see ``arrival.py``)."""
        arrivals = self.processor.arrivals
        consumer = getattr(self._event_subscriber, "consumer", None)
        if arrivals is None or consumer is None:
            return
        tps = consumer.assignment() if partitions is None else [TopicPartition(t, p) for t, p in partitions]
        for tp in tps:
            try:
                highwater, seen_ms = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
            except (AssertionError, KeyError):  # revoked meanwhile
                continue
            if highwater is not None and seen_ms is not None:
                arrivals.note((tp.topic, tp.partition), highwater, seen_ms)

    async def _note_all_arrivals(self) -> None:
        self._note_arrivals()

    async def _export_lag(self) -> None:
        consumer = getattr(self._event_subscriber, "consumer", None)
        if consumer is None:
            return
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await consumer.position(tp)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

    # --- lifecycle ----------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        stalled = self.stalls.stalled()
        if stalled:
            return False, "; ".join(stalled)
        if not self._started:
            return False, "starting"
        if self._stopping.is_set():
            return False, "stopping"
        return True, ""

    async def start(self) -> None:
        if self.http is not None:
            await self.http.start()
        if self.config.create_topics:
            await create_topics(
                self.config.kafka.bootstrap, self.config.topics.all(), self.config.create_topics, self.config.kafka.security
            )
        if self.fleet.store is not None:
            await self.fleet.store.start(create_partitions=self.config.create_topics or 8)
            self.fleet.warn_split_series(self.rules)
        await self.broker.start()
        self._tasks = [
            asyncio.create_task(self._every(1.0, self.fleet.periodic, "fleet")),
            asyncio.create_task(self._every(1.0, self._advance_idle_clock, "idle-clock")),
            asyncio.create_task(self._every(self.config.resend_interval_s, self._resend_firing, "resend")),
            asyncio.create_task(self._every(5.0, self._export_lag, "lag")),
            asyncio.create_task(self._every(1.0, self._note_all_arrivals, "arrivals")),
            asyncio.create_task(self.reloader.run()),
            asyncio.create_task(self.remediation.run()),
        ]
        self._started = True
        _log.info(
            "agent started", rules=len(self.rules), bootstrap=self.config.kafka.bootstrap,
            topic_keys_file=self.topic_keys.path, topic_key_id=self.topic_keys.signing.key_id,
        )

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await self.fleet.quiesce()  # final checkpoints before leaving the group: the next owner finds them
        except Exception:  # noqa: BLE001 - the periodic checkpoints stay valid
            _log.exception("final checkpoints failed")
        with contextlib.suppress(Exception):
            await self.broker.stop()
        try:
            await self.fleet.close()  # the consumer has stopped: final checkpoints are exact
        except Exception:  # noqa: BLE001 - the periodic checkpoints stay valid
            _log.exception("final checkpoints failed")
        await self.remediation.aclose()
        if self.http is not None:
            await self.http.stop()
        if self._positions is not None:
            self._positions.close()
        _log.info("agent stopped")

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run as the process's one agent (``watchkeeper run``) until ``stop`` is set."""
        await self.start()
        freeze_startup_heap()
        try:
            await stop.wait()
        finally:
            await self.stop()
