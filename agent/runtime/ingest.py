"""Kafka records in; dead letters and alert transitions out. The only consumer of events.

A batch is handled in three steps: ``BatchProcessor.process`` turns records into
parsed events (or dead letters) and feeds them to the pipeline; the handler then
publishes the batch's effects (dead letters, alert transitions onto the alerts topic)
and waits for the broker to acknowledge them; only then does FastStream commit the
batch's offsets (at-least-once). If publishing fails, the batch is nacked: the consumer
seeks back and the batch is processed again.

A poison record never stops consumption: anything that cannot become an event goes to
the dead-letter topic with its original bytes, where it came from, and why. That
includes a record whose handling raised an unexpected exception (a bug, or an input
class the contract missed): it is dead-lettered with reason kind ``internal`` and the
exception's type and message, logged, and consumption goes on. Re-raising would NACK
the batch and redeliver the same record for ever, stalling its partition.

Event time is the producer's word, so it is trusted only within ``max_event_skew_s`` of
the record's Kafka timestamp: a record whose ``ts`` is further away is dead-lettered
with reason kind ``skew`` (see docs/security-records.md). Otherwise a producer sending
sixty records in one instant with ``ts`` spread over a minute would fire a ``for: 30s``
rule at once. The record timestamp is the producer's word too (``CreateTime``), so it is
in turn bounded by when this agent saw the partition without the record (``arrival.py``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from agent.errors import EventError
from agent.logs import get_logger
from agent.model import EVENT_ADAPTER, SOURCES, Alert

from .arrival import ArrivalMarks
from .pipeline import Pipeline
from .selfmetrics import SelfMetrics
from .signing import RecordAuth

__all__ = [
    "BatchOutcome",
    "BatchProcessor",
    "DeadLetter",
    "PositionLog",
    "dead_letter_headers",
    "describe_exception",
    "describe_stack",
    "encode_alert",
    "parse_event",
    "publish_alerts",
    "publish_outcome",
]


class RecordLike(Protocol):
    """The part of aiokafka's ``ConsumerRecord`` we read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be used, kept byte for byte with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    reason: str
    kind: str


def dead_letter_headers(dl: DeadLetter) -> dict[str, str]:
    """Headers carried by a dead letter; the value stays the original bytes, replayable."""
    headers = {
        "watchkeeper-reason": dl.reason[:1000],
        "watchkeeper-reason-kind": dl.kind,
        "watchkeeper-topic": dl.topic,
        "watchkeeper-partition": str(dl.partition),
        "watchkeeper-offset": str(dl.offset),
        "watchkeeper-timestamp-ms": str(dl.timestamp_ms),
    }
    if dl.value is None:
        headers["watchkeeper-value"] = "null"  # the original record had a null value, not b""
    return headers


def parse_event(value: bytes | None, max_bytes: int) -> Any:
    """Bytes to a validated event; ``EventError`` says precisely what is wrong."""
    if not value:
        raise EventError("empty: the record has no value")
    if len(value) > max_bytes:
        raise EventError(f"oversized: {len(value)} bytes > max_event_bytes {max_bytes}")
    try:
        return EVENT_ADAPTER.validate_json(value)
    except ValidationError as exc:
        raise EventError(_explain(exc, value)) from None


def _explain(exc: ValidationError, value: bytes) -> str:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return f"invalid JSON: {errors[0]['msg']}"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in SOURCES))
        parts.append(f"{loc or 'event'}: {err['msg']}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid event: " + "; ".join(parts) + more


_NO_MARK = 2**63  # an offset no record reaches: a partition without arrival marks
_LOGGED_PER_BATCH = 10  # a flood of bad events is counted in full but logged in sample
_log = get_logger(__name__)


def _kind(reason: str) -> str:
    return reason.split(":", 1)[0].split()[0]


def describe_exception(exc: BaseException, limit: int = 500) -> str:
    """``Type: message``, bounded, for reasons and logs; never raises (a hostile ``__str__`` may)."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - the description of a failure must not fail
        message = "<unprintable>"
    return f"{type(exc).__name__}: {message[:limit]}"


def describe_stack(exc: BaseException) -> str:
    """The stack of an unexpected error, as text: frames and lines only, never local variables."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=20))[-4000:]


@dataclass
class BatchOutcome:
    """What a batch produced; published before the batch's offsets are committed."""

    dead_letters: list[DeadLetter] = field(default_factory=list)
    transitions: list[Alert] = field(default_factory=list)
    processed: int = 0
    positions: list[tuple[str, int, int]] = field(default_factory=list)
    partitions: set[tuple[str, int]] = field(default_factory=set)  # (topic, partition) of processed records
    skipped: int = 0  # records of partitions not owned (any more)


@dataclass
class BatchProcessor:
    """Turns a batch of records into pipeline updates and effects; no I/O."""

    pipeline: Callable[[], Pipeline]
    metrics: SelfMetrics
    max_event_bytes: int = 256 * 1024
    max_future_s: float = 300.0
    topic_sources: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    record_positions: bool = False
    #: fleet mode: whether this agent owns the record's partition now (fetched records of a
    #: partition revoked meanwhile are left to its new owner)
    accept: Callable[[str, int, int], bool] | None = None
    #: how far (seconds) an event's ``ts`` may be from its record's Kafka timestamp; None
    #: trusts event time as it is (rule tests, backtests, replays of history)
    max_event_skew_s: float | None = None
    #: high-water marks seen per partition, bounding producer-set record timestamps (live
    #: consumption); None, or an empty one, bounds nothing
    arrivals: ArrivalMarks | None = None

    def process(self, records: Iterable[RecordLike]) -> BatchOutcome:
        out = BatchOutcome()
        pipeline = self.pipeline()
        now = self.clock()
        horizon = now + self.max_future_s
        skew_ms = -1.0 if self.max_event_skew_s is None else self.max_event_skew_s * 1000.0
        # a record stamped earlier than this may be a burst with forged record timestamps:
        # only those are looked up in the arrival marks (live traffic costs one comparison)
        stale_ms = -math.inf if skew_ms < 0 or self.arrivals is None else now * 1000.0 - skew_ms
        marked_from = self.arrivals.first_marks() if stale_ms > -math.inf else {}  # type: ignore[union-attr]
        counts: dict[tuple[str, str], int] = {}
        internal = 0
        accept = self.accept
        partitions = out.partitions
        for rec in records:
            if accept is not None and not accept(rec.topic, rec.partition, rec.offset):
                out.skipped += 1
                continue
            where = (rec.topic, rec.partition)
            partitions.add(where)
            source = self.topic_sources.get(rec.topic, rec.topic)
            try:
                if rec.timestamp < stale_ms and rec.offset >= marked_from.get(where, _NO_MARK):
                    self._check_arrival(rec, where, skew_ms)
                event = parse_event(rec.value, self.max_event_bytes)
                if event.ts > horizon:
                    raise EventError(f"future: ts is {event.ts - horizon + self.max_future_s:.0f}s ahead of this agent's clock (max_future_s={self.max_future_s:g})")
                if skew_ms >= 0 and not -skew_ms <= event.ts * 1000.0 - rec.timestamp <= skew_ms:
                    raise EventError(_skew_reason(event.ts, rec.timestamp, skew_ms))
                out.transitions.extend(pipeline.process(event, where))
                outcome = "processed"
                out.processed += 1
            except EventError as exc:
                out.dead_letters.append(
                    DeadLetter(rec.topic, rec.partition, rec.offset, rec.key, rec.value, rec.timestamp, exc.reason, _kind(exc.reason))
                )
                outcome = "late" if exc.reason.startswith("late") else "dead_letter"
            except Exception as exc:  # noqa: BLE001 - one record's failure must never stall its partition
                reason = "internal: " + describe_exception(exc)
                out.dead_letters.append(
                    DeadLetter(rec.topic, rec.partition, rec.offset, rec.key, rec.value, rec.timestamp, reason, "internal")
                )
                outcome = "dead_letter"
                internal += 1
                if internal <= _LOGGED_PER_BATCH:  # every one is counted; a flood is logged in sample
                    _log.error(
                        "event handling failed; dead-lettered",
                        topic=rec.topic, partition=rec.partition, offset=rec.offset, error=reason, traceback=describe_stack(exc),
                    )
            counts[(source, outcome)] = counts.get((source, outcome), 0) + 1
            if self.record_positions:
                out.positions.append((rec.topic, rec.partition, rec.offset))
        try:
            out.transitions.extend(pipeline.tick())
        except Exception as exc:  # noqa: BLE001 - no record's fault: the next tick tries again
            _log.error("alert evaluation failed; retried at the next batch", error=describe_exception(exc), traceback=describe_stack(exc))
        for (source, outcome), n in counts.items():
            self.metrics.events.labels(source, outcome).inc(n)
        for i, dl in enumerate(out.dead_letters):
            self.metrics.dead_letters.labels(dl.topic, dl.kind).inc()
            if i < _LOGGED_PER_BATCH:
                _log.warning("event dead-lettered", topic=dl.topic, partition=dl.partition, offset=dl.offset, reason=dl.reason)
        if len(out.dead_letters) > _LOGGED_PER_BATCH:
            _log.warning("more events dead-lettered in this batch", count=len(out.dead_letters) - _LOGGED_PER_BATCH)
        return out


    def _check_arrival(self, rec: RecordLike, where: tuple[str, int], skew_ms: float) -> None:
        """Refuse a record stamped well before this agent saw its partition end without it."""
        earliest = self.arrivals.earliest_ms(where, rec.offset) if self.arrivals is not None else None
        if earliest is not None and rec.timestamp < earliest - skew_ms:
            raise EventError(
                f"skew: the record's Kafka timestamp is {(earliest - rec.timestamp) / 1000.0:.0f}s before this agent "
                f"saw {rec.topic}/{rec.partition} end without it (max_event_skew_s={skew_ms / 1000.0:g}): "
                "a forged CreateTime, or a producer that held it back"
            )


def _skew_reason(ts: float, timestamp_ms: int, skew_ms: float) -> str:
    if timestamp_ms < 0:
        return "skew: the record has no Kafka timestamp to check its event time against"
    return (
        f"skew: ts is {ts - timestamp_ms / 1000.0:+.0f}s from the record's Kafka timestamp "
        f"(max_event_skew_s={skew_ms / 1000.0:g})"
    )


class Publisher(Protocol):
    """The broker's publish call, as FastStream's ``KafkaBroker.publish`` offers it."""

    async def publish(self, message: Any, topic: str, *, key: bytes | None = ..., headers: dict[str, str] | None = ...) -> Any: ...


async def publish_outcome(
    broker: Publisher, outcome: BatchOutcome, *, dlq_topic: str, alerts_topic: str, auth: RecordAuth
) -> None:
    """Publish a batch's effects and wait for the broker to have them all (alerts signed by ``auth``)."""
    sends = [
        broker.publish(dl.value, dlq_topic, key=dl.key, headers=dead_letter_headers(dl))
        for dl in outcome.dead_letters
    ]
    sends.extend(publish_alerts(broker, outcome.transitions, alerts_topic, auth=auth))
    if sends:
        await asyncio.gather(*sends)


def publish_alerts(broker: Publisher, alerts: Sequence[Alert], topic: str, *, auth: RecordAuth) -> list[Any]:
    """One keyed record per alert snapshot, keyed by fingerprint so one alert stays ordered.

    Each record carries ``auth``'s signature: the notifier and the remediation act only
    on signed alerts (signing.py). ``encode_alert`` cannot fail on any alert.
    """
    sends = []
    for a in alerts:
        value = encode_alert(a)
        key = a.fingerprint.encode()
        headers = {"content-type": "application/json", **auth.headers(key, value)}
        sends.append(broker.publish(value, topic, key=key, headers=headers))
    return sends


def encode_alert(alert: Alert) -> bytes:
    """An alert snapshot as JSON bytes; total: it cannot fail on any alert a valid event makes.

    Evidence and annotations are built from producer values and detector internals, so
    they may hold what ``json`` refuses or other readers misread: NaN and infinities,
    integers beyond 2**53 (or beyond Python's 4300-digit ``str`` limit), tuples, sets,
    bytes, arbitrary objects, non-string keys, lone surrogates. Those become ``null``,
    lists, or strings here, so the outbox record is always standard JSON that any
    reader decodes to the same values. Alerts are few next to events: the walk over
    every value costs nothing that matters.
    """
    return json.dumps(_json_safe(alert.to_dict()), separators=(",", ":"), allow_nan=False).encode()


_MAX_EXACT_INT = 2**53
_MAX_DEPTH = 32


def _json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with everything standard JSON cannot carry exactly replaced (see ``encode_alert``)."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, int):
        return int(value) if -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT else _bounded_str(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return _bounded_str(value)
    if isinstance(value, dict):
        return {_json_key(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if hasattr(value, "items"):  # a Mapping that is not a dict (MappingProxyType)
        try:
            return {_json_key(k): _json_safe(v, depth + 1) for k, v in value.items()}
        except Exception:  # noqa: BLE001 - an odd mapping: its text stands in
            return _bounded_str(value)
    return _bounded_str(value)


def _json_key(key: Any) -> str:
    return _json_safe(key) if isinstance(key, str) else str(_json_safe(key))


def _bounded_str(value: Any, limit: int = 1000) -> str:
    """Text standing in for a value JSON cannot carry; never raises, never huge."""
    if isinstance(value, int):
        digits = value.bit_length() * 0.30103
        return f"{'-' if value < 0 else ''}~1e{digits:.0f}" if digits > 300 else str(value)
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__
        text = f"<{type(value).__name__}>"
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


class PositionLog:
    """An append-only file of processed (topic, partition, offset), made durable per batch.

    Off by default; turned on with ``--processed-log`` to audit at-least-once delivery
    (the chaos tests count every offset in it across agent restarts).
    """

    def __init__(self, path: str) -> None:
        self._fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the agent's life
        # a crash mid-write can leave half a line: end it so the next line stands alone
        if self._fh.tell() > 0:
            self._fh.seek(self._fh.tell() - 1)
            if self._fh.read(1) != "\n":
                self._fh.write("\n")

    def append(self, positions: Sequence[tuple[str, int, int]]) -> None:
        if positions:
            self._fh.write("".join(f"{t}\t{p}\t{o}\n" for t, p, o in positions))
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
