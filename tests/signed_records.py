"""Put records with headers on a topic: genuine ones signed with a key file, forged ones not.

The agent accepts records on its alerts, audit and state topics only with a valid
``watchkeeper-sig`` header (agent/runtime/signing.py). Tests that script incidents
write such records the way the agent does; tests of the trust boundary write the
records a hostile producer would (unsigned, signed with another key, signed for another
topic role).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from agent.runtime.signing import RecordAuth, TopicRole
from agent.runtime.topic_keys import TopicKeys

__all__ = ["Headers", "produce_with_headers", "signed_headers"]

Headers = Sequence[tuple[str, bytes]]


def signed_headers(keys: TopicKeys, role: TopicRole, key: bytes | None, value: bytes | None) -> list[tuple[str, bytes]]:
    """The headers the agent puts on a record of ``role``: content type and signature."""
    auth = RecordAuth(keys, role, topic="-")
    return [("content-type", b"application/json"), *auth.header_list(key, value)]


async def produce_with_headers(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None, Headers]]
) -> list[RecordMetadata]:
    """Send ``(key, value, headers)`` records and wait until every one is acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topic, value=value, key=key, headers=list(headers)) for key, value, headers in records]
        return list(await asyncio.gather(*pending))
    finally:
        await producer.stop()
