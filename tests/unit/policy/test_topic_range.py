"""The topic-range reader's stopping rules, on a consumer that behaves like real Kafka (beside the Tansu test).

Real Kafka answers ``offsets_for_times(to)`` with the first record at or after ``to``:
the reader must stop there (reading one record past the range, to confirm it) and not
go on to the high-water mark. The Tansu test broker answers offset 0 instead, which
``tests/integration/test_policy_backtest_topic.py`` covers on the real server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition

from agent.policy_backtest.sources import _read

TP = TopicPartition("t", 0)


@dataclass
class _Rec:
    offset: int
    timestamp: int
    value: bytes


class _Consumer:
    """One partition of 100 records, one per second from t=0; fetches of 10; counts what was fetched."""

    def __init__(self, start: int) -> None:
        self.pos = start
        self.fetched: list[int] = []

    async def getmany(self, *tps: object, timeout_ms: int = 0) -> dict[object, list[_Rec]]:
        batch = [_Rec(o, o * 1000, b"%d" % o) for o in range(self.pos, min(self.pos + 10, 100))]
        self.pos += len(batch)
        self.fetched += [r.offset for r in batch]
        return {TP: batch} if batch else {}

    async def position(self, tp: object) -> int:
        return self.pos

    def highwater(self, tp: object) -> int:
        return 100

    def pause(self, *tps: object) -> None:
        pass


def test_a_correct_end_offset_stops_the_read_at_the_range() -> None:
    consumer = _Consumer(start=20)
    out = asyncio.run(_read(consumer, {TP: 40}, 20.0, 40.0, 10.0, 1000))
    assert [r.offset for r in out] == list(range(20, 40))
    assert max(consumer.fetched) < 50  # stopped in the batch holding the end offset, not at the high-water mark


def test_an_end_offset_inside_the_range_is_not_trusted() -> None:
    consumer = _Consumer(start=0)  # as Tansu answers: offset 0 for every time
    out = asyncio.run(_read(consumer, {TP: 0}, 20.0, 40.0, 10.0, 1000))
    assert [r.offset for r in out] == list(range(20, 40))
    assert max(consumer.fetched) == 99  # read to the high-water mark instead


def test_no_end_offset_reads_to_the_high_water_mark() -> None:
    out = asyncio.run(_read(_Consumer(start=90), {TP: None}, 0.0, 1000.0, 10.0, 1000))
    assert [r.offset for r in out] == list(range(90, 100))
