"""Kafka records in; dead letters and alert transitions out. The only consumer of events.

A batch is handled in three steps: ``BatchProcessor.process`` turns records into
parsed events (or dead letters) and feeds them to the pipeline; the handler then
publishes the batch's effects (dead letters, alert transitions onto the alerts topic)
and waits for the broker to acknowledge them; only then does FastStream commit the
batch's offsets (at-least-once). If publishing fails, the batch is nacked: the consumer
seeks back and the batch is processed again.

A poison record never stops consumption: anything that cannot become an event goes to
the dead-letter topic with its original bytes, where it came from, and why.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from agent.errors import EventError
from agent.logs import get_logger
from agent.model import EVENT_ADAPTER, SOURCES, Alert

from .pipeline import Pipeline
from .selfmetrics import SelfMetrics

__all__ = [
    "BatchOutcome",
    "BatchProcessor",
    "DeadLetter",
    "PositionLog",
    "dead_letter_headers",
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


_LOGGED_PER_BATCH = 10  # a flood of bad events is counted in full but logged in sample
_log = get_logger(__name__)


def _kind(reason: str) -> str:
    return reason.split(":", 1)[0].split()[0]


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

    def process(self, records: Iterable[RecordLike]) -> BatchOutcome:
        out = BatchOutcome()
        pipeline = self.pipeline()
        horizon = self.clock() + self.max_future_s
        counts: dict[tuple[str, str], int] = {}
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
                event = parse_event(rec.value, self.max_event_bytes)
                if event.ts > horizon:
                    raise EventError(f"future: ts is {event.ts - horizon + self.max_future_s:.0f}s ahead of this agent's clock (max_future_s={self.max_future_s:g})")
                out.transitions.extend(pipeline.process(event, where))
                outcome = "processed"
                out.processed += 1
            except EventError as exc:
                out.dead_letters.append(
                    DeadLetter(rec.topic, rec.partition, rec.offset, rec.key, rec.value, rec.timestamp, exc.reason, _kind(exc.reason))
                )
                outcome = "late" if exc.reason.startswith("late") else "dead_letter"
            counts[(source, outcome)] = counts.get((source, outcome), 0) + 1
            if self.record_positions:
                out.positions.append((rec.topic, rec.partition, rec.offset))
        out.transitions.extend(pipeline.tick())
        for (source, outcome), n in counts.items():
            self.metrics.events.labels(source, outcome).inc(n)
        for i, dl in enumerate(out.dead_letters):
            self.metrics.dead_letters.labels(dl.topic, dl.kind).inc()
            if i < _LOGGED_PER_BATCH:
                _log.warning("event dead-lettered", topic=dl.topic, partition=dl.partition, offset=dl.offset, reason=dl.reason)
        if len(out.dead_letters) > _LOGGED_PER_BATCH:
            _log.warning("more events dead-lettered in this batch", count=len(out.dead_letters) - _LOGGED_PER_BATCH)
        return out


class Publisher(Protocol):
    """The broker's publish call, as FastStream's ``KafkaBroker.publish`` offers it."""

    async def publish(self, message: Any, topic: str, *, key: bytes | None = ..., headers: dict[str, str] | None = ...) -> Any: ...


async def publish_outcome(broker: Publisher, outcome: BatchOutcome, *, dlq_topic: str, alerts_topic: str) -> None:
    """Publish a batch's effects and wait for the broker to have them all."""
    sends = [
        broker.publish(dl.value, dlq_topic, key=dl.key, headers=dead_letter_headers(dl))
        for dl in outcome.dead_letters
    ]
    sends.extend(publish_alerts(broker, outcome.transitions, alerts_topic))
    if sends:
        await asyncio.gather(*sends)


def publish_alerts(broker: Publisher, alerts: Sequence[Alert], topic: str) -> list[Any]:
    """One keyed record per alert snapshot, keyed by fingerprint so one alert stays ordered."""
    return [
        broker.publish(
            json.dumps(a.to_dict(), separators=(",", ":")).encode(),
            topic,
            key=a.fingerprint.encode(),
            headers={"content-type": "application/json"},
        )
        for a in alerts
    ]


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
