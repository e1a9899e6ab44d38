"""Writes and reads checkpoint records (``checkpoint.py``) on the state topic with Kafka clients.

Every checkpoint record (manifest and chunks) is signed with the topic key, and a
restore reads only signed ones (signing.py): a record someone else wrote on the state
topic is counted and skipped, never decoded into detector state. Tombstones carry no
signature (compaction honours them whatever their headers).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Iterable
from typing import Any

from agent.errors import WatchkeeperError
from agent.logs import get_logger

from .selfmetrics import SelfMetrics
from .signing import RecordAuth, TopicRole
from .topic_keys import TopicKeys
from .topics import caught_up
from .checkpoint import CHUNK_BYTES, Checkpoint, CheckpointReader, chunk_key, encode_checkpoint

__all__ = ["CheckpointStore"]

_log = get_logger(__name__)


class CheckpointStore:
    """Writes and reads checkpoints on the state topic with its own Kafka clients.

    Parameters
    ----------
    bootstrap, security:
        Where the broker is and how to authenticate (the agent's own settings).
    topic:
        The state topic. It must exist (``create_topics`` creates it compacted).
    chunk_bytes:
        Largest compressed piece per record; keep it well under the broker's
        ``message.max.bytes`` (1 MiB by default).
    read_timeout_s:
        How long a restore may read before giving up (the partitions then start fresh).
    keys, metrics:
        The topic key file's keys (sign what is written, verify what is read) and where
        rejected records are counted.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        keys: TopicKeys,
        metrics: SelfMetrics | None = None,
        security: Any = None,
        chunk_bytes: int = CHUNK_BYTES,
        read_timeout_s: float = 30.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security
        self.chunk_bytes = chunk_bytes
        self.read_timeout_s = read_timeout_s
        self.auth = RecordAuth(keys, TopicRole.STATE, topic=topic, metrics=metrics)
        self._producer: Any = None
        self._partitions: int = 0
        self._slots: dict[str, str] = {}  # key -> slot of its latest manifest
        self._slot_chunks: dict[str, dict[str, int]] = {}

    def _client_args(self) -> dict[str, Any]:
        from faststream.kafka.security import parse_security

        return {"bootstrap_servers": self.bootstrap, **parse_security(self.security)}

    async def start(self, create_partitions: int = 8) -> None:
        """Connect; create the state topic (compacted) when it is missing.

        The state topic is the agent's own, as a Kafka Streams changelog is: it is created
        with ``create_partitions`` partitions if absent, whatever ``create_topics`` says.
        """
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            acks="all", linger_ms=0, max_request_size=max(2 * self.chunk_bytes, 1 << 20), **self._client_args()
        )
        await producer.start()
        try:
            partitions = (await producer.client.fetch_all_metadata()).partitions_for_topic(self.topic)
            if not partitions:
                from .topics import create_topics

                _log.info("creating the state topic", topic=self.topic, partitions=create_partitions)
                await create_topics(
                    self.bootstrap, [self.topic], create_partitions, self.security, configs={"cleanup.policy": "compact"}
                )
                partitions = await producer.partitions_for(self.topic)
        except Exception as exc:
            await producer.stop()
            raise WatchkeeperError(
                f"state topic {self.topic!r} is not usable ({exc}): create it with cleanup.policy=compact, "
                "or turn checkpoints off (WATCHKEEPER_CHECKPOINTS=false)"
            ) from None
        self._producer = producer
        self._partitions = len(partitions)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def partition_of(self, key: str) -> int:
        """The state partition holding ``key`` and all its chunks (so they stay in order)."""
        return zlib.crc32(key.encode()) % max(1, self._partitions)

    async def write(self, key: str, offset: int, payload: bytes) -> tuple[str, int]:
        """Write one checkpoint; return its id and the bytes sent. Raises on a broker error."""
        assert self._producer is not None, "start() first"
        previous = self._slots.get(key)
        slot = "b" if previous == "a" else "a"
        checkpoint_id = uuid.uuid4().hex
        chunks, manifest = encode_checkpoint(
            key, offset, payload, slot=slot, chunk_bytes=self.chunk_bytes, checkpoint_id=checkpoint_id
        )
        partition = self.partition_of(key)
        send, sign = self._producer.send, self.auth.header_list
        if chunks:
            await asyncio.gather(
                *[await send(self.topic, value=v, key=k.encode(), partition=partition, headers=sign(k.encode(), v)) for k, v in chunks]
            )
        key_bytes = manifest[0].encode()
        await (await send(self.topic, value=manifest[1], key=key_bytes, partition=partition, headers=sign(key_bytes, manifest[1])))
        self._slots[key] = slot
        await self._drop_extra_chunks(key, slot, len(chunks), partition)
        return checkpoint_id, sum(len(v) for _, v in chunks) + len(manifest[1])

    async def _drop_extra_chunks(self, key: str, slot: str, count: int, partition: int) -> None:
        """Tombstone chunks no manifest needs any more, so compaction can free them."""
        known = self._slot_chunks.setdefault(key, {})
        extras = [(slot, i) for i in range(count, known.get(slot, 0))]
        if count == 0:  # inline: the other slot's chunks served only older manifests
            other = "b" if slot == "a" else "a"
            extras += [(other, i) for i in range(known.get(other, 0))]
            known[other] = 0
        known[slot] = count
        if extras:
            sends = [await self._producer.send(self.topic, value=None, key=chunk_key(key, s, i).encode(), partition=partition) for s, i in extras]
            await asyncio.gather(*sends)

    async def read(self, keys: Iterable[str]) -> dict[str, Checkpoint]:
        """The best checkpoint of each key that has one, read up to the high-water marks."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        wanted = set(keys)
        if not wanted:
            return {}
        if not self._partitions:
            raise WatchkeeperError("CheckpointStore.read before start()")
        tps = sorted({TopicPartition(self.topic, self.partition_of(k)) for k in wanted})
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(4 * self.chunk_bytes, 1 << 20),
            fetch_max_wait_ms=50,
            **self._client_args(),
        )
        reader = CheckpointReader(wanted)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + self.read_timeout_s
            while not await caught_up(consumer, tps):
                if time.monotonic() > deadline:
                    raise WatchkeeperError(f"reading state topic {self.topic!r} took over {self.read_timeout_s:g} s")
                batches = await consumer.getmany(*tps, timeout_ms=200, max_records=10_000)
                for records in batches.values():
                    for rec in records:
                        if rec.value is None or self.auth.admit(rec):
                            reader.feed(rec.key, rec.value)
        finally:
            await consumer.stop()
        found = reader.result()
        for key, counts in reader.slot_chunks().items():
            self._slot_chunks[key] = counts
        for key, checkpoint in found.items():
            self._slots[key] = checkpoint.slot
        return found
