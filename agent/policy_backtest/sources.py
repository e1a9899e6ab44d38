"""Recorded events for a policy backtest: a JSONL file, or a Kafka topic range read without a group.

Reading a topic range must not disturb the agents consuming that topic, so no consumer
group is joined and nothing is committed: the partitions are assigned by hand, each is
positioned with ``offsets_for_times(from)``, the range's end offset is
``offsets_for_times(to)`` (or the high-water mark when nothing was written after
``to``), and each partition is read up to that end and no further. Records are then
kept only when their Kafka timestamp lies in ``[from, to)``, which also makes the result
exact on brokers whose timestamp index is coarse or wrong: the end offset is trusted
only once the record found there is at or after ``to`` (one record read past the range
on a correct broker); when it is not (the Tansu test broker answers offset 0 for any
time), the partition is read to its high-water mark instead.

Every record becomes an :class:`Recorded` (raw bytes and where it came from) and the
list is ordered by (event time, partition, offset): the order a replay uses, the same
on every run.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Recorded", "TooManyRecords", "read_jsonl", "read_topic"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded record: its bytes, and where it was (``partition`` -1 for a file, ``offset`` its line)."""

    value: bytes
    partition: int
    offset: int
    ts: float = math.nan  # the Kafka timestamp (s), NaN for a file


class TooManyRecords(ValueError):
    """The input holds more records than the backtest may keep in memory: narrow the window."""


def read_jsonl(path: Path, *, max_bytes: int = 256 * 1024, max_records: int = 5_000_000) -> list[Recorded]:
    """Every non-blank line of ``path``, as bytes, with its line number.

    A line longer than ``max_bytes`` is never held whole: its first ``max_bytes + 1``
    bytes are kept (the replay counts it ``too-large``) and the rest is skipped as it
    is read. More than ``max_records`` lines raise :class:`TooManyRecords`.
    """
    out: list[Recorded] = []
    lineno = 0
    with path.open("rb") as fh:
        while True:
            line = fh.readline(max_bytes + 2)
            if not line:
                break
            lineno += 1
            if not line.endswith(b"\n") and len(line) > max_bytes:
                while (rest := fh.readline(1 << 16)) and not rest.endswith(b"\n"):
                    pass  # the tail of an oversized line: dropped unread
            if line.strip():
                if len(out) >= max_records:
                    raise TooManyRecords(f"{path} holds more than {max_records} events: narrow --from/--to or raise --max-events")
                out.append(Recorded(line.rstrip(b"\r\n"), -1, lineno))
    return out


async def read_topic(
    bootstrap: str,
    topic: str,
    start: float,
    end: float,
    *,
    security: Any = None,
    timeout_s: float = 60.0,
    max_records: int = 5_000_000,
) -> list[Recorded]:
    """Records of ``topic`` whose Kafka timestamp is in ``[start, end)`` (epoch seconds), with no group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from faststream.kafka.security import parse_security

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(parse_security(security) if security is not None else {}),
    )
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ()) or await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: int(start * 1000) for tp in tps})
        ends = await consumer.offsets_for_times({tp: int(end * 1000) for tp in tps})
        todo: dict[Any, int | None] = {}
        for tp in tps:
            first = starts.get(tp)
            if first is None:
                continue  # nothing at or after ``start`` in this partition
            consumer.seek(tp, first.offset)
            last = ends.get(tp)
            todo[tp] = None if last is None else last.offset  # None: read to the high-water mark
        return await _read(consumer, todo, start, end, timeout_s, max_records)
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> list[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
    return sorted(consumer.partitions_for_topic(topic) or ())


async def _read(
    consumer: Any, todo: dict[Any, int | None], start: float, end: float, timeout_s: float, max_records: int
) -> list[Recorded]:
    out: list[Recorded] = []
    deadline = time.monotonic() + timeout_s
    end_ms = int(end * 1000)
    live = dict(todo)
    while live:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the topic range was not read within {timeout_s:g}s ({len(out)} records so far)")
        batches = await consumer.getmany(*live, timeout_ms=500)
        for tp, records in batches.items():
            for rec in records:
                stop = live.get(tp)
                if stop is not None and rec.offset >= stop:
                    if rec.timestamp >= end_ms:
                        live[tp] = rec.offset  # the range's end, confirmed by the record there
                        break
                    # the timestamp index answered an offset whose record is inside the range (Tansu
                    # answers offset 0 for every time): trust it no further, read to the high-water mark
                    live[tp] = None
                ts = rec.timestamp / 1000.0
                if start <= ts < end and rec.value is not None:
                    if len(out) >= max_records:
                        raise TooManyRecords(f"the range holds more than {max_records} records: narrow --from/--to or raise --max-events")
                    out.append(Recorded(bytes(rec.value), tp.partition, rec.offset, ts))
        for tp in list(live):
            stop = live[tp]
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            at_end = (stop is not None and position > stop) or (highwater is not None and position >= highwater)
            if at_end:
                del live[tp]
                consumer.pause(tp)
        await asyncio.sleep(0)
    return out
