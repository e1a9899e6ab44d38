"""The emitter stamps each Kafka record with its event's time, not with the moment it is sent.

The agent trusts event time only within ``max_event_skew_s`` of the record's timestamp
(issue 12): a backlog drained after a broker outage must keep its events' own times.
"""

from __future__ import annotations

import asyncio
from typing import Any

from watchkeeper_emit import Emitter, inference_event


class StampingProducer:
    """An in-memory producer that keeps each record's timestamp."""

    def __init__(self, **kwargs: Any) -> None:
        self.stamps: list[int | None] = []

    async def start(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes, timestamp_ms: int | None = None) -> "asyncio.Future[None]":
        self.stamps.append(timestamp_ms)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def stop(self) -> None:
        pass


async def test_records_carry_their_events_time() -> None:
    producer = StampingProducer()
    emitter = await Emitter("memory:9092", producer_factory=lambda **kw: producer, register_metrics=False).start()
    emitter.emit(inference_event("svc", "m", "1", latency_ms=1.0, ts=1_800_000_000.25))
    emitter.emit({**inference_event("svc", "m", "1", latency_ms=1.0), "ts": "2027-01-15T08:00:00Z"})
    await emitter.close()
    assert producer.stamps == [1_800_000_000_250, None]  # an RFC 3339 ts: the producer's clock stamps it
