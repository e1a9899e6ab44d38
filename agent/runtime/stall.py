"""Notice a partition that cannot advance: the same batch redelivered again and again.

A handler that raises makes FastStream NACK the batch: the consumer seeks back and the
same records come again. That is right for a passing fault (the broker is briefly
unreachable) and silent ruin for a lasting one: consumer lag grows, nothing is counted,
``/healthz`` stays green. ``StallWatch`` counts, per input partition, how many times in a
row a batch starting at the same offset failed; at ``batches`` such failures the
partition is *stalled*: ``/readyz`` turns red with the reason and
``watchkeeper_partition_stalled{topic,partition}`` is 1 (the shipped self-alert
``WatchkeeperPartitionStalled`` pages on it). The first batch of that partition that
goes through clears it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .selfmetrics import SelfMetrics

__all__ = ["StallWatch"]


class StallWatch:
    """Per (topic, partition): the offset a failing batch started at, and how often it failed."""

    def __init__(self, metrics: SelfMetrics, batches: int = 5) -> None:
        if batches < 1:
            raise ValueError("stall_batches must be >= 1")
        self.metrics = metrics
        self.batches = batches
        self._failing: dict[tuple[str, int], tuple[int, int]] = {}  # where -> (first offset, failures)

    def failed(self, records: Iterable[Any]) -> None:
        """A batch of these records was not committed (its handler raised): it will come again."""
        first: dict[tuple[str, int], int] = {}
        for rec in records:
            where = (rec.topic, rec.partition)
            if rec.offset < first.get(where, rec.offset + 1):
                first[where] = rec.offset
        for where, offset in first.items():
            seen, count = self._failing.get(where, (offset, 0))
            count = count + 1 if seen == offset else 1
            self._failing[where] = (offset, count)
            if count >= self.batches:
                self.metrics.partition_stalled.labels(where[0], str(where[1])).set(1)

    def advanced(self, records: Iterable[Any]) -> None:
        """A batch of these records went through: their partitions move again."""
        if not self._failing:  # the common case: one truth test per batch
            return
        for where in {(rec.topic, rec.partition) for rec in records}:
            if self._failing.pop(where, None) is not None:
                self.metrics.partition_stalled.labels(where[0], str(where[1])).set(0)

    def stalled(self) -> list[str]:
        """Why each stalled partition is stalled, for ``/readyz``."""
        return [
            f"partition {topic}/{partition} stalled: the batch at offset {offset} failed {count} times in a row"
            for (topic, partition), (offset, count) in sorted(self._failing.items())
            if count >= self.batches
        ]
