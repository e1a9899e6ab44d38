"""A Kafka emitter that never makes the service wait.

``emit(event)`` appends to a bounded in-memory buffer and returns at once (a few
hundred nanoseconds, from any thread); when the buffer is full the event is dropped
and counted, never queued behind a slow or unreachable broker. A background task on
the service's event loop drains the buffer in batches into an aiokafka producer, keyed
by the event's owner (``service`` or ``node``) so one owner's events stay in order on
one partition. ``close()`` flushes what is buffered, within a deadline.

Failure model: the broker may be down at start, go away mid-flight or never come; the
producer is (re)started with backoff in the background, the buffer fills and drops,
and the service carries on. Every event ends in exactly one counter: ``sent``,
``errors`` (Kafka did not acknowledge it), or ``dropped_by_reason`` (``buffer_full``,
``invalid``, ``too_large``, ``closed``: emitted after close, ``shutdown``: still
buffered when the close deadline passed).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import metrics as _metrics
from .config import kafka_kwargs_from_env, topics_from_env
from .events import owner_of

__all__ = ["Emitter"]

_log = logging.getLogger("watchkeeper_emit")
_DROP_REASONS = ("buffer_full", "invalid", "too_large", "closed", "shutdown")


class Emitter:
    """Buffered, batching, non-blocking producer of Watchkeeper events.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap servers, ``host:port[,host:port]``.
    topics
        Event type -> topic; defaults to ``watchkeeper.<type>`` (inference, llm, gpu, retrieval, feedback).
    max_buffer
        Events held while waiting for the producer; beyond it ``emit`` drops.
    linger_ms
        The longest an event waits in the buffer before the drain task sends it
        (sooner once ``batch_records`` are buffered).
    batch_records
        Events handed to the producer per drain step before yielding to the loop.
    max_event_bytes
        Larger encoded events are dropped (``too_large``): the agent would dead-letter them.
    client_id
        Kafka client id, and the ``client_id`` label of the exported metrics.
    register_metrics
        Export the counters through ``prometheus_client`` when it is importable.
    metrics_registry
        The ``CollectorRegistry`` to use (default: the global one).
    producer_factory
        Builds the producer from keyword arguments (tests; default ``AIOKafkaProducer``).
    **kafka
        Extra producer settings (``acks``, ``compression_type``, ``security_protocol``...).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Mapping[str, str] | None = None,
        max_buffer: int = 10_000,
        linger_ms: float = 50.0,
        batch_records: int = 500,
        max_event_bytes: int = 256 * 1024,
        client_id: str = "watchkeeper-emit",
        register_metrics: bool = True,
        metrics_registry: Any = None,
        producer_factory: Callable[..., Any] | None = None,
        **kafka: Any,
    ) -> None:
        if not bootstrap:
            raise ValueError("bootstrap servers are empty (WATCHKEEPER_KAFKA_BOOTSTRAP)")
        if max_buffer < 1 or batch_records < 1 or linger_ms <= 0:
            raise ValueError("max_buffer and batch_records must be >= 1 and linger_ms > 0")
        self.bootstrap = bootstrap
        self.topics = dict(topics or topics_from_env({}))
        self.max_buffer = max_buffer
        self.linger_s = linger_ms / 1000.0
        self.batch_records = batch_records
        self.max_event_bytes = max_event_bytes
        self.client_id = client_id
        self._kafka = {"acks": 1, "linger_ms": 5, "request_timeout_ms": 30_000, "client_id": client_id, **kafka}
        self._factory = producer_factory
        self._buffer: collections.deque[Mapping[str, Any]] = collections.deque()
        self._lock = threading.Lock()  # only the rare drop path and thread wake-ups take it
        self.sent = 0
        self.errors = 0
        self.dropped_by_reason: dict[str, int] = dict.fromkeys(_DROP_REASONS, 0)
        self._inflight = 0
        self._abandoned = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self.connected = False
        self._last_error_log = 0.0
        if register_metrics:
            _metrics.register(self, metrics_registry)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Emitter":
        """An emitter configured by ``WATCHKEEPER_*`` variables (see :mod:`watchkeeper_emit.config`)."""
        import os

        env = os.environ if env is None else env
        settings: dict[str, Any] = {"topics": topics_from_env(env), **kafka_kwargs_from_env(env)}
        if env.get("WATCHKEEPER_EMIT_MAX_BUFFER"):
            settings["max_buffer"] = int(env["WATCHKEEPER_EMIT_MAX_BUFFER"])
        settings.update(overrides)
        return cls(env.get("WATCHKEEPER_KAFKA_BOOTSTRAP", ""), **settings)

    # --- counters -----------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Events dropped for any reason."""
        return sum(self.dropped_by_reason.values())

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped_by_reason[reason] += n

    # --- the caller's side --------------------------------------------------------------
    def emit(self, event: Mapping[str, Any]) -> bool:
        """Buffer one event for sending; never blocks. False when it was dropped.

        Safe from any thread. The event is encoded later, on the drain task: do not
        mutate it after emitting.
        """
        if self._closing:
            self._drop("closed")
            return False
        if len(self._buffer) >= self.max_buffer:
            self._drop("buffer_full")
            return False
        self._buffer.append(event)
        if len(self._buffer) >= self.batch_records and self._wake is not None and not self._wake.is_set():
            self._wakeup()
        return True

    def _wakeup(self) -> None:
        if self._wake is None or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is closed: close() already accounted for the buffer
                pass

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> "Emitter":
        """Start the drain task; returns at once, also when the broker is unreachable."""
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=f"watchkeeper-emit:{self.client_id}")
        return self

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything emitted so far is acknowledged or failed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._buffer or self._inflight:
            if self._task is None or self._task.done() or time.monotonic() >= deadline:
                return False
            self._wakeup()
            await asyncio.sleep(0.005)
        return True

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting events, deliver what is buffered within ``timeout_s``, stop the producer.

        Whatever is still buffered at the deadline is counted as dropped (``shutdown``).
        """
        self._closing = True
        if self._task is None:
            self._drop("shutdown", len(self._buffer))
            self._buffer.clear()
            return
        deadline = time.monotonic() + timeout_s
        await self.flush(timeout_s)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        leftover = len(self._buffer)
        if leftover:
            self._buffer.clear()
            self._drop("shutdown", leftover)
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), max(0.5, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - shutting down: report, never raise
                _log.warning("watchkeeper-emit: producer did not stop cleanly: %s", exc)
            self._producer = None
        self.connected = False
        unresolved = self._inflight
        if unresolved:  # the producer stopped without settling them: count them now, ignore late callbacks
            self._abandoned = True
            self._inflight = 0
            self.errors += unresolved
        if leftover or unresolved:
            _log.warning("watchkeeper-emit: closed with %d events undelivered", leftover + unresolved)

    async def __aenter__(self) -> "Emitter":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the drain task -----------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.5
        while self._producer is None:
            producer = None
            try:
                producer = self._make_producer()
                await producer.start()
            except Exception as exc:  # noqa: BLE001 - unreachable broker, DNS, auth: retry, never crash
                self._log_error("cannot connect to Kafka at %s (retrying in %.1fs): %s", self.bootstrap, backoff, exc)
                if producer is not None:
                    try:
                        await producer.stop()
                    except Exception:  # noqa: BLE001
                        pass
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            self._producer = producer
            self.connected = True
        assert self._wake is not None
        while True:
            await self._drain()
            self._wake.clear()
            if len(self._buffer) < self.batch_records:
                try:  # linger: let a batch build up unless a full one or a flush wakes us
                    await asyncio.wait_for(self._wake.wait(), timeout=self.linger_s)
                except TimeoutError:
                    pass

    def _make_producer(self) -> Any:
        if self._factory is not None:
            return self._factory(bootstrap_servers=self.bootstrap, **self._kafka)
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, **self._kafka)

    async def _drain(self) -> None:
        """Hand the buffer to the producer, yielding to the loop between batches."""
        n = 0
        while self._buffer:
            event = self._buffer.popleft()
            try:
                topic, key, value = self._encode(event)
            except (ValueError, TypeError) as exc:
                self._drop("invalid")
                self._log_error("dropped an invalid event: %s", exc)
                continue
            if len(value) > self.max_event_bytes:
                self._drop("too_large")
                continue
            self._inflight += 1
            try:
                # the record's timestamp is the event's time, not the (maybe much later) send:
                # Watchkeeper trusts event time only close to it, and a backlog drained after
                # a broker outage must not look like forged time
                delivery = await self._producer.send(topic, value=value, key=key, timestamp_ms=_record_ms(event))
            except asyncio.CancelledError:  # close() gave up waiting: account for this event
                self._inflight -= 1
                self._drop("shutdown")
                raise
            except Exception as exc:  # noqa: BLE001 - metadata timeout, broker gone: count, go on
                self._inflight -= 1
                self.errors += 1
                self._log_error("send to %s failed: %s", topic, exc)
                continue
            delivery.add_done_callback(self._delivered)
            n += 1
            if n % self.batch_records == 0:
                await asyncio.sleep(0)  # never hold the service's loop for a whole backlog

    def _encode(self, event: Mapping[str, Any]) -> tuple[str, bytes, bytes]:
        owner = owner_of(event)
        topic = self.topics[event["type"]]
        return topic, owner.encode(), json.dumps(event, allow_nan=False, separators=(",", ":")).encode()

    def _delivered(self, delivery: "asyncio.Future[Any]") -> None:
        if self._abandoned:  # close() already counted this one as an error
            return
        self._inflight -= 1
        if delivery.cancelled():
            self.errors += 1
        elif delivery.exception() is not None:
            self.errors += 1
            self._log_error("Kafka did not acknowledge an event: %s", delivery.exception())
        else:
            self.sent += 1

    def _log_error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 30.0:  # one line per 30 s: a dead broker must not flood logs
            self._last_error_log = now
            _log.warning("watchkeeper-emit: " + message, *args)


def _record_ms(event: Mapping[str, Any]) -> int | None:
    """The Kafka record timestamp (ms) of an event: its ``ts`` if epoch seconds, else None (now)."""
    ts = event.get("ts")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and 0 <= ts < 1e11:
        return int(ts * 1000)
    return None
