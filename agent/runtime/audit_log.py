"""The audit topic as a log: read it from the start, follow it, publish to it.

Every agent reads the whole audit topic without a consumer group, because the guards
need every agent's decisions (the fleet budget, cooldowns, approvals). At start the
topic is read from the earliest offset up to each partition's high-water mark before
any alert is handled (:meth:`AuditTail.wait_caught_up`); then new records are applied
as they arrive. On Tansu ``end_offsets()`` is unreliable, so "the end" is the
high-water mark a fetch reports (see ../shared/TESTBED.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka.security import parse_security

from actions.audit import AuditRecord
from agent.logs import get_logger

from .signing import RecordAuth, TopicRole
from .topic_keys import TopicKeys
from .topics import caught_up as consumer_caught_up

__all__ = ["AuditTail", "publish_record", "read_audit"]

_log = get_logger(__name__)


class AuditTail:
    """Follows the audit topic and hands each decoded record to ``on_record``.

    Parameters
    ----------
    bootstrap, topic, security
        Where the audit topic is.
    on_record
        Called for every record, in partition order (synchronously: keep it cheap).
    auth
        Admits only records signed with the topic key (signing.py): a forged ``approved``
        record is counted and skipped, never applied to the ledger.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        on_record: Callable[[AuditRecord], None],
        *,
        auth: RecordAuth,
        security: Any = None,
        poll_timeout_ms: int = 200,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._on_record = on_record
        self._auth = auth
        self._security = security
        self._poll_timeout_ms = poll_timeout_ms
        self.caught_up = asyncio.Event()
        self.records = 0
        self.undecodable = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._next: dict[int, int] = {}  # partition -> next offset to apply (a reconnect re-reads)

    async def run(self, stop: asyncio.Event) -> None:
        """Read to the end, set ``caught_up``, then follow until ``stop``; reconnects on errors."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broker outage: retry, never die
                _log.warning("audit topic unreadable; retrying", topic=self.topic, error=str(exc))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)

    async def _follow(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            metadata_max_age_ms=30_000,
            **parse_security(self._security),
        )
        await consumer.start()
        self._consumer = consumer
        warn_at = time.monotonic() + 30.0
        try:
            while not stop.is_set():
                if not self.caught_up.is_set() and time.monotonic() > warn_at:
                    warn_at = float("inf")
                    _log.warning("audit topic not read to its end yet; remediations wait for it", topic=self.topic)
                batches = await consumer.getmany(timeout_ms=self._poll_timeout_ms)
                for batch in batches.values():
                    for rec in batch:
                        if rec.offset >= self._next.get(rec.partition, 0):
                            self._next[rec.partition] = rec.offset + 1
                            if self._auth.admit(rec):
                                self._apply(rec.value)
                if not self.caught_up.is_set() and await consumer_caught_up(consumer):
                    self.caught_up.set()
                    _log.info("audit ledger rebuilt", topic=self.topic, records=self.records)
        finally:
            self._consumer = None
            await consumer.stop()

    @property
    def rejected(self) -> int:
        """Records ignored for a missing or bad signature."""
        return self._auth.rejected

    def _apply(self, value: bytes | None) -> None:
        try:
            record = AuditRecord.from_json(value)
        except (ValueError, KeyError, TypeError) as exc:
            self.undecodable += 1
            _log.error("skipping undecodable record on the audit topic", topic=self.topic, error=str(exc))
            return
        self.records += 1
        self._on_record(record)


async def read_audit(
    bootstrap: str, topic: str, *, keys: TopicKeys, security: Any = None, timeout_s: float = 15.0
) -> list[AuditRecord]:
    """Every authentic record on the audit topic now (for the CLI); ``TimeoutError`` if the end is not reached."""
    records: list[AuditRecord] = []
    stop = asyncio.Event()
    auth = RecordAuth(keys, TopicRole.AUDIT, topic=topic)
    tail = AuditTail(bootstrap, topic, records.append, auth=auth, security=security, poll_timeout_ms=100)
    task = asyncio.create_task(tail.run(stop))
    try:
        await asyncio.wait_for(tail.caught_up.wait(), timeout=timeout_s)
    except asyncio.TimeoutError:
        raise TimeoutError(f"could not read the audit topic {topic!r} at {bootstrap} within {timeout_s:g}s") from None
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
    records.sort(key=lambda r: r.ts)
    return records


async def publish_record(bootstrap: str, topic: str, record: AuditRecord, *, keys: TopicKeys, security: Any = None) -> None:
    """Publish one record, signed, and wait until the broker has it (for the CLI; the agent uses its broker)."""
    key, value = record.target.encode(), record.to_json()
    headers = [("content-type", b"application/json"), *RecordAuth(keys, TopicRole.AUDIT, topic=topic).header_list(key, value)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **parse_security(security))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()

