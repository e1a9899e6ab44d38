"""One member of a Watchkeeper fleet: the partitions it owns, their checkpoints, their lag.

Several agents in one consumer group split the event topics' partitions. Everything a
partition's events built (detectors, alerts, clocks: ``partition_state.py``) moves with
the partition, through checkpoints on the state topic (``checkpoint.py``):

* **assigned**: before any of its records is processed, the partition is paused, its
  latest checkpoint is restored and the consumer seeks to the checkpoint's offset
  (state at N, resume at N), then it is resumed. Without a checkpoint it starts fresh
  at the committed offset, as a single agent always did.
* **revoked**: after the batch in flight has published its effects, a final
  checkpoint is written and the partition's state leaves memory; records of it that
  were already fetched are not processed here.
* **in between**: every ``interval_s`` the partitions that moved are checkpointed.

Records between a checkpoint and the committed offset are processed again by the next
owner. Their alert transitions are published again with the same fingerprint and
``active_at`` (Alertmanager deduplicates; remediation is idempotent on that pair); a
restored firing alert emits nothing by itself, so no incident is paged twice.

Event time across partitions. A partition that has a backlog or had records in the last
``idle_s`` is ``held`` in the pipeline: its series are judged at its own event clock,
not at the clock of partitions that are ahead (``Pipeline._judge_time``), so a lagging
partition neither resolves what still fires nor fires on "no events", and verdicts do
not depend on how fetches interleave partitions (a replay gives the same alerts at the
same event times). A caught-up partition quiet for ``idle_s`` follows the global clock,
so its alerts still resolve when its producers stop. Past ``lag_warn_records`` a
partition is reported as lagging (metric and log).

All entry points that touch the pipeline take ``lock``; the batch handler holds it from
processing to published effects, so a rebalance never sees half a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from agent.logs import get_logger
from agent.model import Alert

from .checkpoint import state_key
from .checkpoint_store import CheckpointStore
from .partition_state import decode_partition, restore_partition, snapshot_partitions
from .pipeline import DetachedPartition, Pipeline
from .selfmetrics import SelfMetrics

__all__ = ["FleetMember"]

_log = get_logger(__name__)

Where = tuple[str, int]


@dataclass
class _Owned:
    """What this member knows of one partition it owns."""

    next_offset: int | None  # next offset to process; None until known (fresh, no record yet)
    checkpointed: int | None = None  # offset of the last checkpoint written or restored
    checkpoint_id: str | None = None  # and its id
    dirty: bool = False  # an alert changed without the offset moving (idle tick)
    lagging: bool = False
    held: bool = False  # judged at its own event clock (see the module docstring)


class FleetMember(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer's rebalance listener and the checkpoint schedule of one agent.

    Parameters
    ----------
    group:
        The consumer group; part of every checkpoint key.
    pipeline:
        Returns the agent's pipeline (it is replaced on some reloads, never mid-batch).
    consumer:
        Returns the event subscriber's aiokafka consumer (None before start).
    store:
        Where checkpoints go; None turns checkpoints off (ownership and lag still work).
    publish:
        Publishes alert transitions made by a restore (alerts of removed rules resolve).
    interval_s:
        Seconds between periodic checkpoints of the partitions that moved.
    idle_s:
        Wall seconds without records after which a caught-up partition follows the
        global event clock (the agent's ``idle_advance_s``).
    lag_warn_records:
        A partition more records than this behind its high-water mark is lagging.
    """

    def __init__(
        self,
        *,
        group: str,
        pipeline: Callable[[], Pipeline],
        consumer: Callable[[], Any],
        store: CheckpointStore | None,
        metrics: SelfMetrics,
        publish: Callable[[list[Alert]], Awaitable[None]],
        interval_s: float = 10.0,
        lag_warn_records: int = 10_000,
        idle_s: float = 5.0,
    ) -> None:
        self.group = group
        self.pipeline = pipeline
        self.consumer = consumer
        self.store = store
        self.metrics = metrics
        self.publish = publish
        self.interval_s = interval_s
        self.lag_warn_records = lag_warn_records
        self.idle_s = idle_s
        self.lock = asyncio.Lock()
        self.owned: dict[Where, _Owned] = {}
        # False until the first assignment: without a group (FastStream's TestKafkaBroker)
        # every record is this agent's
        self.tracking = False
        self._topics_seen: set[str] = set()
        self._last_records: dict[Where, float] = {}  # monotonic time of each partition's latest batch
        self._parked: dict[Where, tuple[DetachedPartition, str]] = {}  # revoked, checkpoint id
        self._last_checkpoint = time.monotonic()

    # --- the batch handler's side ---------------------------------------------------
    def accept(self, topic: str, partition: int, offset: int) -> bool:
        """Whether to process a record: only of a partition this member owns now."""
        owned = self.owned.get((topic, partition))
        if owned is None:
            # a revoked partition's records go to its next owner, which resumes at the final
            # checkpoint; without checkpoints they are processed here, as they always were
            return not self.tracking or self.store is None
        if owned.next_offset is None or offset >= owned.next_offset:
            owned.next_offset = offset + 1
        if not owned.held:  # records again: judged at its own clock from this batch on
            owned.held = True
            self.pipeline().held.add((topic, partition))
        return True

    def note_transitions(self, alerts: Iterable[Alert]) -> None:
        """Alerts changed (perhaps without records, by an idle tick): checkpoint their partitions."""
        engine = self.pipeline().engine
        for alert in alerts:
            state = engine.series((alert.rule_id, alert.series))
            owned = self.owned.get(state.where) if state is not None else None
            if owned is not None:
                owned.dirty = True

    async def after_batch(self, partitions: Iterable[Where]) -> None:
        """After a batch's effects are durable: update lag, checkpoint when due. Holds the lock."""
        consumer = self.consumer()
        now = time.monotonic()
        held = self.pipeline().held
        for where in partitions:
            owned = self.owned.get(where)
            if owned is None:
                continue
            held.add(where)
            owned.held = True
            self._last_records[where] = now
            if owned.next_offset is not None and consumer is not None:
                self._set_lag(where, owned, _highwater(consumer, where), owned.next_offset)
        if time.monotonic() - self._last_checkpoint >= self.interval_s:
            await self.checkpoint()

    async def periodic(self) -> None:
        """Background round: lag of quiet partitions, and checkpoints when due."""
        consumer = self.consumer()
        positions: dict[Where, int] = {}
        if consumer is not None:
            for where, owned in list(self.owned.items()):
                if owned.next_offset is not None:
                    positions[where] = owned.next_offset
                    continue
                try:  # no record processed since the assignment: ask the consumer, briefly
                    positions[where] = await asyncio.wait_for(consumer.position(_tp(where)), 0.2)
                except Exception:  # noqa: BLE001 - not assigned any more, or no position yet
                    continue
        async with self.lock:
            for where, position in positions.items():
                owned = self.owned.get(where)
                if owned is not None and consumer is not None:
                    self._set_lag(where, owned, _highwater(consumer, where), owned.next_offset or position)
            if time.monotonic() - self._last_checkpoint >= self.interval_s:
                await self.checkpoint()

    def _set_lag(self, where: Where, owned: _Owned, highwater: int | None, position: int) -> None:
        if highwater is None:
            return
        lag = max(0, highwater - position)
        pipeline = self.pipeline()
        if lag > 0:
            pipeline.held.add(where)
            owned.held = True
        elif time.monotonic() - self._last_records.get(where, float("-inf")) >= self.idle_s:
            pipeline.held.discard(where)  # caught up and quiet: it follows the global clock
            owned.held = False
        lagging = lag > self.lag_warn_records
        topic, partition = where[0], str(where[1])
        self.metrics.partition_lagging.labels(topic, partition).set(1 if lagging else 0)
        clock = pipeline.partition_clock.get(where)
        if clock is not None:
            self.metrics.partition_event_time.labels(topic, partition).set(clock)
        if lagging != owned.lagging:
            owned.lagging = lagging
            behind = time.time() - clock if clock is not None else None
            if lagging:
                _log.warning(
                    "partition lagging: alerts of its series are judged at its own event time until it catches up",
                    topic=topic, partition=where[1], lag_records=lag, event_time_behind_s=behind,
                )
            else:
                _log.info("partition no longer lagging", topic=topic, partition=where[1], lag_records=lag)

    # --- checkpoints ------------------------------------------------------------------
    async def checkpoint(self, only: Iterable[Where] | None = None) -> int:
        """Checkpoint the owned partitions that moved (of ``only``, if given); caller holds the lock."""
        self._last_checkpoint = time.monotonic()
        if self.store is None:
            return 0
        pipeline = self.pipeline()
        offsets: dict[Where, int] = {}
        forced = set(only) if only is not None else None
        for where, owned in self.owned.items():
            if owned.next_offset is None:
                continue
            if forced is not None and where not in forced:
                continue
            if owned.next_offset == owned.checkpointed and not owned.dirty:
                continue  # the latest checkpoint is still exact
            offsets[where] = owned.next_offset
        if not offsets:
            return 0
        t0 = time.perf_counter()
        # in a thread: a large state takes seconds to encode, and the event loop must go on
        # heartbeating meanwhile; the lock keeps batches (the only writers) out
        payloads = await asyncio.to_thread(snapshot_partitions, pipeline, offsets)
        self.metrics.checkpoint_duration.labels("encode").observe(time.perf_counter() - t0)
        todo = [(where, offset, payloads[where]) for where, offset in offsets.items()]
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *[self.store.write(state_key(self.group, w[0], w[1]), offset, payload) for w, offset, payload in todo],
            return_exceptions=True,
        )
        self.metrics.checkpoint_duration.labels("write").observe(time.perf_counter() - t0)
        written = 0
        for (where, offset, _), result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                self.metrics.checkpoints.labels("failed").inc()
                _log.warning("checkpoint not written; the previous one stays valid", where=list(where), error=repr(result))
                continue
            written += 1
            checkpoint_id, size = result
            self.metrics.checkpoints.labels("written").inc()
            self.metrics.checkpoint_bytes.inc(size)
            self.metrics.checkpoint_offset.labels(where[0], str(where[1])).set(offset)
            owned = self.owned.get(where)
            if owned is not None:
                owned.checkpointed, owned.checkpoint_id = offset, checkpoint_id
                owned.dirty = False
        return written

    # --- the rebalance listener (aiokafka ConsumerRebalanceListener protocol) -----------
    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        wheres = [(tp.topic, tp.partition) for tp in revoked]
        async with self.lock:
            mine = [w for w in wheres if w in self.owned]
            if not mine:
                return
            t0 = time.monotonic()
            await self.checkpoint(only=mine)
            pipeline = self.pipeline()
            for where in mine:
                owned = self.owned.pop(where)
                exact = owned.checkpoint_id is not None and owned.checkpointed == owned.next_offset and not owned.dirty
                if exact:
                    # an eager rebalance revokes everything and often gives it straight back:
                    # keep the live state aside, and use it if the checkpoint is still the latest
                    self._parked[where] = (pipeline.detach_partition(where), owned.checkpoint_id)
                else:
                    pipeline.forget_partition(where)
                for gauge in (self.metrics.partition_lagging, self.metrics.partition_event_time):
                    with contextlib.suppress(KeyError):  # its new owner reports it now
                        gauge.remove(where[0], str(where[1]))
            self._count_owned()
            _log.info("partitions revoked", partitions=_names(mine), seconds=round(time.monotonic() - t0, 3))

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        tps = list(assigned)
        self.tracking = True
        consumer = self.consumer()
        if consumer is not None and tps:
            consumer.pause(*tps)  # first thing, before any await: nothing is fetched past a seek we have not made
        try:
            async with self.lock:
                await self._adopt(consumer, tps)
        finally:
            if consumer is not None and tps:
                consumer.resume(*[tp for tp in tps if tp in consumer.assignment()])

    async def _adopt(self, consumer: Any, tps: list[Any]) -> None:
        t0 = time.monotonic()
        wheres = [(tp.topic, tp.partition) for tp in tps if (tp.topic, tp.partition) not in self.owned]
        found: dict[str, Any] = {}
        if self.store is not None and wheres:
            try:
                found = await self.store.read(state_key(self.group, t, p) for t, p in wheres)
            except Exception as exc:  # noqa: BLE001 - an unreadable state topic must not stop consumption
                self.metrics.checkpoint_restores.labels("unreadable").inc(len(wheres))
                _log.error("cannot read checkpoints; assigned partitions start fresh", error=repr(exc), partitions=_names(wheres))
        pipeline = self.pipeline()
        transitions: list[Alert] = []
        restored = []
        parked, self._parked = self._parked, {}  # what is not given back now went to another member
        kept = []
        for where in wheres:
            checkpoint = found.get(state_key(self.group, *where))
            owned = _Owned(next_offset=None)
            back = parked.get(where)
            if (
                checkpoint is not None
                and back is not None
                and back[1] == checkpoint.checkpoint_id
                and pipeline.attach_partition(back[0])
            ):
                owned = _Owned(next_offset=checkpoint.offset, checkpointed=checkpoint.offset, checkpoint_id=checkpoint.checkpoint_id)
                if consumer is not None:
                    consumer.seek(_tp(where), checkpoint.offset)
                self.metrics.checkpoint_restores.labels("kept").inc()
                kept.append(where)
            elif checkpoint is not None:
                try:
                    # decoded in a thread (heartbeats go on), installed here
                    part, resolved = await asyncio.to_thread(decode_partition, pipeline.rules, where, checkpoint.payload)
                    if not pipeline.attach_partition(part):  # the rules changed meanwhile
                        resolved = restore_partition(pipeline, where, checkpoint.payload)
                    transitions.extend(resolved)
                except Exception as exc:  # noqa: BLE001 - a bad checkpoint costs that partition its state, nothing more
                    pipeline.forget_partition(where)
                    self.metrics.checkpoint_restores.labels("corrupt").inc()
                    _log.error("cannot restore checkpoint; partition starts fresh", where=list(where), error=repr(exc))
                else:
                    owned = _Owned(next_offset=checkpoint.offset, checkpointed=checkpoint.offset, checkpoint_id=checkpoint.checkpoint_id)
                    if consumer is not None:
                        consumer.seek(_tp(where), checkpoint.offset)
                    self.metrics.checkpoint_restores.labels("restored").inc()
                    self.metrics.checkpoint_offset.labels(where[0], str(where[1])).set(checkpoint.offset)
                    restored.append(where)
            else:
                self.metrics.checkpoint_restores.labels("fresh").inc()
                if consumer is not None and self.store is not None:
                    # know where processing starts, so that a revocation before the first
                    # record still leaves a checkpoint of that position for the next owner
                    start = await _start_offset(consumer, _tp(where))
                    if start is not None:
                        owned = _Owned(next_offset=start)
                        consumer.seek(_tp(where), start)
            pipeline.held.add(where)  # until its lag is known: it may be far behind the others
            owned.held = True
            self.owned[where] = owned
        self._count_owned()
        if transitions:
            await self.publish(transitions)
        _log.info(
            "partitions assigned",
            partitions=_names(wheres),
            restored=_names(restored),
            kept=_names(kept),
            seconds=round(time.monotonic() - t0, 3),
        )

    @staticmethod
    def warn_split_series(rules: Any) -> list[str]:
        """Rules whose series key lacks the owner: in a fleet each member keeps a share of them."""
        owner = {"inference": "service", "llm": "service", "gpu": "node", "retrieval": "service", "feedback": "service"}
        split = [r.id for r in rules.rules if owner.get(r.source) not in r.by]
        if split:
            _log.warning(
                "these rules key series without the event owner: with several agents in the group each keeps "
                "its own share of such a series (add the owner to `by` to keep one state per series)",
                rules=split,
            )
        return split

    def _count_owned(self) -> None:
        counts: dict[str, int] = {}
        for topic, _ in self.owned:
            counts[topic] = counts.get(topic, 0) + 1
        for topic in self._topics_seen | counts.keys():
            self.metrics.partitions_owned.labels(topic).set(counts.get(topic, 0))
        self._topics_seen |= counts.keys()

    async def quiesce(self) -> None:
        """On shutdown, before leaving the group: stop fetching, finish the batch, checkpoint all."""
        consumer = self.consumer()
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.pause(*consumer.assignment())
        async with self.lock:
            await self.checkpoint(only=list(self.owned))

    async def close(self) -> None:
        """On shutdown, after the consumer stopped: checkpoint what moved since ``quiesce``."""
        async with self.lock:
            await self.checkpoint(only=list(self.owned))
        if self.store is not None:
            await self.store.stop()


def _tp(where: Where) -> TopicPartition:
    return TopicPartition(where[0], where[1])


async def _start_offset(consumer: Any, tp: TopicPartition) -> int | None:
    """The committed offset, else the log start (``auto_offset_reset="earliest"``)."""
    try:
        committed = await asyncio.wait_for(consumer.committed(tp), 5.0)
        if committed is None:
            committed = (await asyncio.wait_for(consumer.beginning_offsets([tp]), 5.0))[tp]
        return int(committed)
    except Exception as exc:  # noqa: BLE001 - then it starts where the consumer starts, unknown to us
        _log.warning("cannot read the start offset of a partition", partition=str(tp), error=repr(exc))
        return None


def _highwater(consumer: Any, where: Where) -> int | None:
    try:
        return consumer.highwater(_tp(where))
    except Exception:  # noqa: BLE001 - not assigned (any more)
        return None


def _names(wheres: Iterable[Where]) -> list[str]:
    return sorted(f"{t}/{p}" for t, p in wheres)
