"""Read what the agent published: alert transitions (alerts topic) and decisions (audit topic).

The observer is a plain group-less consumer from the earliest offset, so it sees every
transition the agent made durable, whichever agent process made it. After a broker
restart (Tansu loses every topic) :meth:`TopicObserver.reconnect` starts over on the new,
empty topics and keeps what it had already read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

__all__ = ["TopicObserver"]


class TopicObserver:
    """Collects JSON records of ``alerts_topic`` and ``audit_topic`` with their arrival wall time."""

    def __init__(self, bootstrap: str, alerts_topic: str, audit_topic: str) -> None:
        self.bootstrap = bootstrap
        self.alerts_topic = alerts_topic
        self.audit_topic = audit_topic
        self.transitions: list[dict[str, Any]] = []
        self.audit: list[dict[str, Any]] = []
        self.last_record_wall = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.alerts_topic, self.audit_topic, bootstrap_servers=self.bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=1000,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(self._consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for tp, records in batches.items():
                for r in records:
                    try:
                        value = json.loads(r.value)
                    except (TypeError, ValueError):
                        continue  # not ours to judge: the agent wrote it
                    if not isinstance(value, dict):
                        continue
                    value["_wall"] = time.time()
                    (self.transitions if tp.topic == self.alerts_topic else self.audit).append(value)
                    self.last_record_wall = time.monotonic()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    async def reconnect(self) -> None:
        await self.stop()
        await self.start()

    def alert_transitions(self) -> list[dict[str, Any]]:
        """Alert dicts (``Alert.to_dict`` shape) in publication order."""
        return [t for t in self.transitions if "fingerprint" in t and "state" in t]
