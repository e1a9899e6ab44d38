"""Checkpoint records on the state topic: framing, chunks, which manifest wins, bad bytes."""

from __future__ import annotations

import logging
import os

import pytest

from agent.runtime.checkpoint import MAGIC, CheckpointReader, encode_checkpoint, state_key

KEY = state_key("wk", "watchkeeper.inference", 3)


def records(key: str, offset: int, payload: bytes, **kw) -> list[tuple[bytes, bytes | None]]:
    """The records of one checkpoint in write order (chunks, then the manifest), as bytes."""
    chunks, manifest = encode_checkpoint(key, offset, payload, **kw)
    return [(k.encode(), v) for k, v in [*chunks, manifest]]


def read(log: list[tuple[bytes, bytes | None]], keys=None) -> CheckpointReader:
    reader = CheckpointReader(keys)
    for key, value in log:
        reader.feed(key, value)
    return reader


def test_key_names_group_topic_and_partition():
    assert KEY == "wk|watchkeeper.inference|3"


def test_small_state_is_one_record_with_the_state_inline():
    log = records(KEY, 42, b'{"v":1}')
    assert len(log) == 1 and log[0][0] == KEY.encode() and log[0][1].startswith(MAGIC)
    got = read(log).result()[KEY]
    assert (got.offset, got.payload, got.chunks) == (42, b'{"v":1}', 0)


def test_large_state_is_chunked_and_reassembled():
    payload = os.urandom(10_000)  # incompressible: 10 chunks of 1 KB
    log = records(KEY, 7, payload, chunk_bytes=1024)
    assert len(log) == 11 and log[-1][0] == KEY.encode()  # the manifest comes last
    assert [k.decode() for k, _ in log[:2]] == [f"{KEY}#a0", f"{KEY}#a1"]
    got = read(log).result()[KEY]
    assert got.payload == payload and got.chunks == 10 and got.offset == 7


def test_highest_offset_wins_and_a_tie_goes_to_the_later_record():
    log = records(KEY, 10, b"ten") + records(KEY, 20, b"twenty") + records(KEY, 15, b"stale flush of a fenced member")
    assert read(log).result()[KEY].payload == b"twenty"
    log += records(KEY, 20, b"twenty, after an idle tick")
    assert read(log).result()[KEY].payload == b"twenty, after an idle tick"


def test_keys_are_independent_and_filtered():
    other = state_key("wk", "watchkeeper.inference", 4)
    log = records(KEY, 1, b"three") + records(other, 2, b"four")
    assert {k: c.payload for k, c in read(log).result().items()} == {KEY: b"three", other: b"four"}
    assert set(read(log, keys={other}).result()) == {other}


def test_a_torn_write_leaves_the_previous_checkpoint(caplog):
    first = os.urandom(5000)
    log = records(KEY, 5, first, chunk_bytes=1024, slot="a")
    second = records(KEY, 9, os.urandom(5000), chunk_bytes=1024, slot="b")
    log += second[:3]  # the writer died after three chunks: no manifest
    assert read(log).result()[KEY].payload == first


def test_a_damaged_chunk_falls_back_to_the_other_slot(caplog):
    first, second = os.urandom(4000), os.urandom(4000)
    log = records(KEY, 5, first, chunk_bytes=1024, slot="a") + records(KEY, 9, second, chunk_bytes=1024, slot="b")
    key, value = log[-3]  # a chunk of the newer checkpoint, flipped
    log[-3] = (key, value[:-1] + bytes([value[-1] ^ 0xFF]))
    with caplog.at_level(logging.WARNING):
        reader = read(log)
        got = reader.result()[KEY]
    assert got.payload == first and got.offset == 5
    assert reader.corrupt == 1


def test_a_chunk_overwritten_by_a_later_torn_write_is_detected():
    # a, then b, then a crashed rewrite of slot a: the latest manifest (b) is intact and wins,
    # and were it damaged, slot a no longer matches its manifest: the partition starts fresh
    a = records(KEY, 1, os.urandom(3000), chunk_bytes=1024, slot="a")
    b = records(KEY, 2, os.urandom(3000), chunk_bytes=1024, slot="b")
    torn_a = records(KEY, 3, os.urandom(3000), chunk_bytes=1024, slot="a")[:2]
    reader = read(a + b + torn_a)
    assert reader.result()[KEY].offset == 2
    b_damaged = [*b[:-1], (b[-1][0], b[-1][1][:-5])]  # a truncated manifest header is not a checkpoint
    reader = read(a + b_damaged + torn_a)
    assert KEY not in reader.result()
    assert reader.corrupt >= 1


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not a checkpoint at all",
        MAGIC,
        MAGIC + b"M" + (10**6).to_bytes(4, "big") + b"{}",
        MAGIC + b"M" + (2).to_bytes(4, "big") + b"[]",
        MAGIC + b"X" + (2).to_bytes(4, "big") + b"{}",
        MAGIC + b"M" + (7).to_bytes(4, "big") + b'{"key":',
        MAGIC + b"M" + (20).to_bytes(4, "big") + b'{"key":"k","id":"i"}',  # no offset
    ],
)
def test_garbage_is_skipped_with_a_log_and_never_raises(value, caplog):
    good = records(KEY, 3, b"good")
    with caplog.at_level(logging.WARNING):
        reader = read([*good, (KEY.encode(), value), (None, value)], keys=None)
        result = reader.result()
    assert result[KEY].payload == b"good"
    assert reader.corrupt >= 1


def test_checksum_mismatch_of_an_inline_state_is_rejected():
    (key, value), = records(KEY, 3, b"payload")
    reader = read([(key, value[:-1] + b"\x00")])
    assert reader.result() == {} and reader.corrupt == 1


def test_a_tombstone_on_the_manifest_key_erases_the_partition_state():
    log = records(KEY, 3, b"x") + [(KEY.encode(), None)]
    assert read(log).result() == {}
    assert read([*log, *records(KEY, 4, b"y")]).result()[KEY].payload == b"y"


def test_chunk_tombstones_and_slot_counts_are_tracked():
    log = records(KEY, 1, os.urandom(3000), chunk_bytes=1024, slot="a")
    assert read(log).slot_chunks() == {KEY: {"a": 3}}
    log.append((f"{KEY}#a2".encode(), None))
    reader = read(log)
    assert reader.slot_chunks() == {KEY: {"a": 2}}
    assert KEY not in reader.result()  # its manifest needs chunk 2


def test_bad_slot_is_refused():
    with pytest.raises(ValueError):
        encode_checkpoint(KEY, 1, b"x", slot="c")
