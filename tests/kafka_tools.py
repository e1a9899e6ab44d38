"""Small aiokafka helpers for integration tests: put messages on a topic, read them back.

Reading always starts at ``"earliest"`` without a consumer group: on the Tansu test
broker ``end_offsets()``/``seek_to_end`` are wrong when producers batch, so "how far
is the end" comes from ``consumer.highwater(tp)`` (see ``../shared/TESTBED.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.structs import RecordMetadata

from agent.runtime.topics import caught_up

__all__ = ["consume", "produce"]

Key = bytes | str | None


def _key_bytes(key: Key) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


async def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[Key, bytes]]
) -> list[RecordMetadata]:
    """Send ``(key, value)`` pairs to ``topic`` and wait until every one is acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        pending = [
            await producer.send(topic, value=value, key=_key_bytes(key)) for key, value in messages
        ]
        return list(await asyncio.gather(*pending))
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, n: int | None = None, timeout_s: float = 10.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning, without a consumer group.

    Stops after ``n`` messages, or, with ``n=None``, once every partition is read up
    to its high watermark. Returns what was read, sorted by (partition, offset), also
    when ``timeout_s`` runs out first, so the caller's assertion shows how many arrived.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for batch in batches.values():
                records.extend(batch)
            if n is not None:
                if len(records) >= n:
                    break
            elif await caught_up(consumer):
                break
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records
