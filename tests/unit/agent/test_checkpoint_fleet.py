"""The rebalance listener without a broker: restore before processing, seek, park, skip revoked.

The store keeps its records in a list and reads them through the real ``CheckpointReader``
(the broker-backed ``CheckpointStore`` is exercised by tests/integration/test_fleet.py).
"""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from agent.model import AlertState
from agent.runtime.checkpoint import CheckpointReader, encode_checkpoint
from agent.runtime.fleet import FleetMember
from agent.runtime.pipeline import Pipeline
from agent.runtime.selfmetrics import SelfMetrics
from tests.unit.agent.rulebook import inference, one_rule, rules_from

MEAN = "{kind: threshold, field: latency_ms, agg: mean, window_s: 10, op: '>', threshold: 100, min_count: 3}"
TP = TopicPartition("wk.inference", 0)
WHERE = ("wk.inference", 0)


class ListStore:
    """Checkpoint records in a list, in write order, read back with the real reader."""

    def __init__(self) -> None:
        self.log: list[tuple[bytes, bytes | None]] = []
        self.writes = 0

    async def write(self, key: str, offset: int, payload: bytes) -> tuple[str, int]:
        self.writes += 1
        chunks, manifest = encode_checkpoint(key, offset, payload, checkpoint_id=f"cp{self.writes}", chunk_bytes=4096)
        self.log += [(k.encode(), v) for k, v in [*chunks, manifest]]
        return f"cp{self.writes}", len(manifest[1])

    async def read(self, keys):
        reader = CheckpointReader(set(keys))
        for k, v in self.log:
            reader.feed(k, v)
        return reader.result()


class Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.paused: set[TopicPartition] = set()
        self.assigned: set[TopicPartition] = set()

    def pause(self, *tps):
        self.paused |= set(tps)

    def resume(self, *tps):
        self.paused -= set(tps)

    def seek(self, tp, offset):
        assert tp in self.paused, "a seek happens while the partition is paused"
        self.seeks.append((tp, offset))

    def assignment(self):
        return self.assigned

    def highwater(self, tp):
        return None

    async def committed(self, tp):
        return None  # a new group

    async def beginning_offsets(self, tps):
        return {tp: 0 for tp in tps}


def member(pipeline: Pipeline, store: ListStore, consumer: Consumer) -> FleetMember:
    async def publish(alerts):
        raise AssertionError(f"nothing to publish: {alerts}")

    return FleetMember(
        group="wk", pipeline=lambda: pipeline, consumer=lambda: consumer, store=store, metrics=SelfMetrics(), publish=publish
    )


def feed(fleet: FleetMember, pipeline: Pipeline, first_offset: int, n: int, latency: float) -> None:
    for i in range(n):
        offset = first_offset + i
        if fleet.accept(*WHERE, offset):
            pipeline.process(inference(1_000.0 + offset, latency), WHERE)
    pipeline.tick()


async def test_a_firing_alert_moves_to_the_next_owner_which_seeks_to_the_checkpoint():
    rules = one_rule(MEAN, for_="3s", keep="3s")
    store, consumer_a, consumer_b = ListStore(), Consumer(), Consumer()
    a_pipe, b_pipe = Pipeline(rules), Pipeline(rules)
    a, b = member(a_pipe, store, consumer_a), member(b_pipe, store, consumer_b)
    consumer_a.assigned = {TP}
    await a.on_partitions_assigned({TP})
    assert consumer_a.seeks == [(TP, 0)] and consumer_a.paused == set()  # nothing to restore: the log start
    feed(a, a_pipe, 0, 20, 500.0)
    (fired,) = a_pipe.firing()
    await a.on_partitions_revoked({TP})
    assert a_pipe.firing() == [] and not a.accept(*WHERE, 20)  # gone from A, and A skips its records

    consumer_b.assigned = {TP}
    await b.on_partitions_assigned({TP})
    assert consumer_b.seeks == [(TP, 20)] and consumer_b.paused == set()
    assert b_pipe.firing() == [fired]  # same fingerprint, active_at, fired_at: not a new incident
    feed(b, b_pipe, 20, 5, 500.0)
    assert [x.state for x in b_pipe.firing()] == [AlertState.FIRING]


async def test_a_partition_given_back_after_a_rebalance_keeps_its_live_state():
    rules = one_rule(MEAN)
    store, consumer = ListStore(), Consumer()
    pipeline = Pipeline(rules)
    fleet = member(pipeline, store, consumer)
    consumer.assigned = {TP}
    await fleet.on_partitions_assigned({TP})
    feed(fleet, pipeline, 0, 10, 50.0)
    state = pipeline.engine.series(("g/A", ("svc",)))
    await fleet.on_partitions_revoked({TP})
    assert pipeline.engine.series(("g/A", ("svc",))) is None
    await fleet.on_partitions_assigned({TP})
    assert pipeline.engine.series(("g/A", ("svc",))) is state  # the same object: nothing decoded
    assert fleet.metrics.registry.get_sample_value("watchkeeper_checkpoint_restores_total", {"outcome": "kept"}) == 1
    assert consumer.seeks == [(TP, 0), (TP, 10)]


async def test_a_newer_checkpoint_by_another_member_wins_over_the_parked_state():
    rules = one_rule(MEAN)
    store, consumer = ListStore(), Consumer()
    pipeline, other = Pipeline(rules), Pipeline(rules)
    fleet = member(pipeline, store, consumer)
    consumer.assigned = {TP}
    await fleet.on_partitions_assigned({TP})
    feed(fleet, pipeline, 0, 10, 50.0)
    await fleet.on_partitions_revoked({TP})
    # meanwhile another member owned it, processed 5 more records and checkpointed
    second = member(other, store, Consumer())
    second.consumer().assigned = {TP}
    await second.on_partitions_assigned({TP})
    feed(second, other, 10, 5, 50.0)
    await second.on_partitions_revoked({TP})
    await fleet.on_partitions_assigned({TP})
    assert consumer.seeks[-1] == (TP, 15)
    assert pipeline.engine.series(("g/A", ("svc",))).last_ts == 1_014.0


@pytest.mark.parametrize(("tracking", "checkpoints"), [(False, True), (True, True), (True, False)])
def test_records_of_partitions_not_owned_are_skipped_once_a_group_assigns(tracking, checkpoints):
    fleet = member(Pipeline(one_rule(MEAN)), ListStore(), Consumer())
    fleet.tracking = tracking
    if not checkpoints:
        fleet.store = None
    assert fleet.accept("wk.inference", 3, 0) is (not tracking or not checkpoints)


async def test_a_partition_revoked_before_its_first_record_still_leaves_its_position():
    """Records fetched but skipped after the revocation may be committed past: the checkpoint says where to resume."""
    store, consumer = ListStore(), Consumer()
    fleet = member(Pipeline(one_rule(MEAN)), store, consumer)
    consumer.assigned = {TP}
    await fleet.on_partitions_assigned({TP})
    await fleet.on_partitions_revoked({TP})
    (checkpoint,) = (await store.read(["wk|wk.inference|0"])).values()
    assert checkpoint.offset == 0


def test_rules_whose_series_span_owners_are_named():
    spanning = rules_from(
        f"groups:\n- name: g\n  rules:\n  - alert: PerModel\n    source: inference\n    by: [model]\n    detector: {MEAN}\n"
    )
    assert FleetMember.warn_split_series(spanning) == ["g/PerModel"]
    assert FleetMember.warn_split_series(one_rule(MEAN, by="[service, model]")) == []
