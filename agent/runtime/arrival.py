"""When could a record have been appended at the earliest? Bound producer-set record timestamps.

The event-time bound (``max_event_skew_s``) compares ``ts`` with the record's Kafka
timestamp, but with ``CreateTime`` topics (Kafka's default) the producer sets that
timestamp too: a forger stamps each record of a burst as it stamps ``ts``. What the
producer cannot forge is when this agent saw the partition *without* the record.

Each fetch response tells the consumer a partition's high-water mark; aiokafka keeps
it with the time of that fetch (``highwater(tp)``, ``last_poll_timestamp(tp)``). A
record at an offset at or above a high-water mark seen at time T did not exist at T,
so it was appended after T, and an honest producer stamped it no earlier than
T - max_event_skew_s (its own delay and clock offset). A record stamped earlier is
dead-lettered with kind ``skew``.

Catch-up is the natural exception: records of a backlog sit below every high-water
mark the agent has seen, so nothing constrains them (they are trusted as the event-time
bound alone says). The agent notes marks once a second for every assigned partition
and after every batch, so a burst arriving on a quiet partition is measured against a
mark at most about a second old.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ArrivalMarks"]

_MAX_MARKS = 256  # per partition: ~4 minutes of one-second marks while a backlog drains


class ArrivalMarks:
    """Per partition, ``(high-water mark, seen at ms)`` pairs with strictly increasing marks."""

    def __init__(self) -> None:
        self._marks: dict[tuple[str, int], deque[tuple[int, int]]] = {}

    def note(self, where: tuple[str, int], highwater: int, seen_ms: int) -> None:
        """The partition ``where`` ended before offset ``highwater`` at ``seen_ms`` (this agent's clock)."""
        marks = self._marks.get(where)
        if marks is None:
            marks = self._marks[where] = deque()
        if marks:
            last, at = marks[-1]
            if highwater == last:
                if seen_ms > at:  # the same end, seen later: a tighter bound for what follows
                    marks[-1] = (highwater, seen_ms)
                return
            if highwater < last:  # the log went back (recreated topic, unclean election): start over
                marks.clear()
        marks.append((highwater, seen_ms))
        if len(marks) > _MAX_MARKS:
            marks.popleft()

    def first_marks(self) -> dict[tuple[str, int], int]:
        """Per partition, the lowest high-water mark known: records below it are never constrained.

        Taken once per batch, so that a backlog costs one comparison per record, no lookup.
        """
        return {where: marks[0][0] for where, marks in self._marks.items() if marks}

    def earliest_ms(self, where: tuple[str, int], offset: int) -> int | None:
        """The time after which the record at ``offset`` was appended; None if nothing is known.

        Records come in offset order, so marks wholly behind ``offset`` are dropped as it goes.
        """
        marks = self._marks.get(where)
        if not marks:
            return None
        while len(marks) > 1 and marks[1][0] <= offset:
            marks.popleft()
        highwater, seen_ms = marks[0]
        return seen_ms if highwater <= offset else None
