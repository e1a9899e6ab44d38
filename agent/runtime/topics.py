"""Topic creation for the embedded broker, tests, and ``--create-topics``.

Production Kafka usually has its topics created by the operator; the agent creates
missing ones only when asked, with the same security settings as its clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from faststream.kafka.security import parse_security

from agent.errors import WatchkeeperError

__all__ = ["caught_up", "create_topics"]


async def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 4, security: Any = None, configs: dict[str, str] | None = None
) -> None:
    """Create ``names`` with ``partitions`` partitions each; topics that exist are left alone.

    ``configs`` are topic configs, e.g. ``{"cleanup.policy": "compact"}`` for the state topic.
    """
    topics = [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=configs or {}) for name in names]
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **parse_security(security))
    await admin.start()
    try:
        response = await admin.create_topics(topics)
    finally:
        await admin.close()
    for topic, code, *rest in response.topic_errors:
        error = for_code(code)
        if code and error is not TopicAlreadyExistsError:
            message = rest[0] if rest and rest[0] else error.__name__
            raise WatchkeeperError(f"cannot create topic {topic!r} on {bootstrap}: {message}")


async def caught_up(consumer: Any, partitions: Sequence[Any] | None = None) -> bool:
    """Whether ``consumer`` has read ``partitions`` (default: its assignment) to their ends.

    The end is the high-water mark the consumer last saw, not ``end_offsets()``, which
    Tansu gets wrong when producers batch (see ``../shared/TESTBED.md``). With no
    assignment yet, nothing has been read: False.
    """
    if partitions is None:
        partitions = list(consumer.assignment())
        if not partitions:
            return False
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True
