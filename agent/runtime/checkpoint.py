"""Checkpoint records: one partition's state on a compacted Kafka topic, replaced atomically.

The record format and how a log of records is read back; ``checkpoint_store.py`` writes
and reads them with Kafka clients.

A checkpoint is the state of everything one input partition owns (detectors, alerts,
clocks) at one offset: "state at N; resume reading at N". It is stored as records
keyed ``<group>|<topic>|<partition>`` on the state topic (``cleanup.policy=compact``), so
the topic keeps the latest checkpoint of every partition and any member of the group
can restore a partition it is assigned.

Atomic replacement under compaction. A small checkpoint is one record (the manifest,
with the state inline). A large one is split into chunks of ``chunk_bytes`` written
first, under keys ``<key>#<slot><i>``, then the manifest naming them. Successive large
checkpoints alternate between two slots, so a writer that dies mid-write only ever
damages the slot the latest manifest does not name: compaction keeps the latest value
per key, and the latest manifest's chunks were the latest writes to their keys.

Which checkpoint wins. The one with the highest offset, the later one on a tie (a
checkpoint taken at the same offset after an idle tick changed an alert). Highest
offset rather than latest written: a member that was fenced out of the group (a long
pause) may flush a stale checkpoint after the new owner wrote a newer one, and both
are valid states of the same deterministic processing, so the further one is kept.

Bad bytes never stop a restore: a record that is not a checkpoint, a truncated chunk or
a checksum mismatch is logged and skipped, and the next best manifest is tried; with
none left the partition starts fresh, as without checkpoints. Before any of that, a
record not signed with the agents' topic key is dropped unread (``checkpoint_store.py``,
``signing.py``): the checksum catches accidents, the signature forgeries. A tombstone on the
manifest key (``kafka-console-producer --property null.marker``) erases a partition's
state on purpose.

Each key lives on one partition of the state topic, chosen by a CRC of the key, so a
restore reads only the state partitions of the keys it needs, up to their high-water
marks (not ``end_offsets``: on Tansu it is wrong when producers batch).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from agent.logs import get_logger

__all__ = [
    "CHUNK_BYTES",
    "Checkpoint",
    "CheckpointReader",
    "chunk_key",
    "encode_checkpoint",
    "state_key",
]

_log = get_logger(__name__)

MAGIC = b"WKCP\x01"
_MANIFEST = b"M"
_CHUNK = b"C"
CHUNK_BYTES = 512 * 1024
_SLOTS = ("a", "b")


def state_key(group: str, topic: str, partition: int) -> str:
    """The record key of one input partition's checkpoint, for one consumer group."""
    return f"{group}|{topic}|{partition}"


def chunk_key(key: str, slot: str, index: int) -> str:
    """The record key of one chunk (``#`` never occurs in a topic name, so never ends a state key)."""
    return f"{key}#{slot}{index}"


def _chunk_of(text: str) -> tuple[str, str, int] | None:
    base, sep, suffix = text.rpartition("#")
    if sep and suffix[:1] in _SLOTS and suffix[1:].isdigit():
        return base, suffix[:1], int(suffix[1:])
    return None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One partition's state at ``offset`` (the next offset to read), as restored."""

    key: str
    offset: int
    payload: bytes  # the state, decompressed (JSON, see partition_state.py)
    checkpoint_id: str
    slot: str
    chunks: int
    written_at: float


class CheckpointError(ValueError):
    """A record on the state topic that is not a usable checkpoint record."""


def _frame(kind: bytes, header: dict[str, Any], body: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + kind + len(head).to_bytes(4, "big") + head + body


def _unframe(value: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    if len(value) < len(MAGIC) + 5 or not value.startswith(MAGIC):
        raise CheckpointError("not a watchkeeper checkpoint record (bad magic or version)")
    kind = value[len(MAGIC) : len(MAGIC) + 1]
    start = len(MAGIC) + 5
    size = int.from_bytes(value[len(MAGIC) + 1 : start], "big")
    if kind not in (_MANIFEST, _CHUNK) or start + size > len(value):
        raise CheckpointError("truncated or unknown checkpoint record")
    try:
        header = json.loads(value[start : start + size])
    except ValueError as exc:
        raise CheckpointError(f"unreadable checkpoint header: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("key"), str) or not isinstance(header.get("id"), str):
        raise CheckpointError("checkpoint header without key or id")
    return kind, header, value[start + size :]


def encode_checkpoint(
    key: str,
    offset: int,
    payload: bytes,
    *,
    slot: str = "a",
    chunk_bytes: int = CHUNK_BYTES,
    checkpoint_id: str | None = None,
    now: Callable[[], float] = time.time,
) -> tuple[list[tuple[str, bytes]], tuple[str, bytes]]:
    """(chunk records, manifest record) for one checkpoint; write the chunks first.

    The payload is compressed (zlib, fast level) and, when it is larger than
    ``chunk_bytes``, split into chunks in ``slot``; the manifest carries the checksum
    of the whole compressed payload so a restore can tell a torn write.
    """
    if slot not in _SLOTS:
        raise ValueError(f"slot must be one of {_SLOTS}")
    blob = zlib.compress(payload, 1)
    cid = checkpoint_id or uuid.uuid4().hex
    header: dict[str, Any] = {
        "key": key,
        "id": cid,
        "offset": int(offset),
        "slot": slot,
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "codec": "zlib+json",
        "written_at": now(),
    }
    if len(blob) <= chunk_bytes:
        header["chunks"] = 0
        return [], (key, _frame(_MANIFEST, header, blob))
    parts = [blob[i : i + chunk_bytes] for i in range(0, len(blob), chunk_bytes)]
    header["chunks"] = len(parts)
    chunks = [
        (chunk_key(key, slot, i), _frame(_CHUNK, {"key": key, "id": cid, "slot": slot, "index": i}, part))
        for i, part in enumerate(parts)
    ]
    return chunks, (key, _frame(_MANIFEST, header, b""))


@dataclass
class _Manifest:
    header: dict[str, Any]
    inline: bytes
    seq: int

    @property
    def rank(self) -> tuple[int, int]:
        return (int(self.header["offset"]), self.seq)


@dataclass
class CheckpointReader:
    """Folds state-topic records, in log order, into the best checkpoint per key.

    ``keys``: the manifest keys wanted (None: all). ``feed`` never raises; records that
    are not checkpoints are counted in ``corrupt`` and logged (a sample).
    """

    keys: Container[str] | None = None
    corrupt: int = 0
    _best: dict[str, list[_Manifest]] = field(default_factory=dict)
    _chunks: dict[tuple[str, str, int], tuple[str, bytes]] = field(default_factory=dict)
    _seq: int = 0

    def feed(self, key: bytes | None, value: bytes | None) -> None:
        self._seq += 1
        text = key.decode("utf-8", "replace") if key else ""
        if value is None:  # a tombstone: a chunk went, or the partition's state was erased
            chunk = _chunk_of(text)
            if chunk is not None:
                self._chunks.pop(chunk, None)
            elif self._wanted(text):
                self._best.pop(text, None)
            return
        try:
            kind, header, body = _unframe(value)
            if not self._wanted(header["key"]):
                return
            if kind == _CHUNK:
                self._chunks[(header["key"], str(header["slot"]), int(header["index"]))] = (header["id"], body)
                return
            int(header["offset"]), int(header["chunks"])  # noqa: B018 - validated here, used later
            if header.get("slot") not in _SLOTS:
                raise CheckpointError(f"unknown slot {header.get('slot')!r}")
        except (CheckpointError, KeyError, ValueError, TypeError, IndexError) as exc:
            self._reject(text, f"{type(exc).__name__}: {exc}")
            return
        manifest = _Manifest(header, body, self._seq)
        ranked = sorted([*self._best.get(header["key"], []), manifest], key=lambda m: m.rank, reverse=True)
        self._best[header["key"]] = ranked[:2]  # the best, and the other slot's as a fallback

    def _wanted(self, key: str) -> bool:
        return self.keys is None or key in self.keys

    def _reject(self, key: str, why: str) -> None:
        self.corrupt += 1
        if self.corrupt <= 10:
            _log.warning("ignoring a bad record on the state topic", key=key, reason=why)

    def result(self) -> dict[str, Checkpoint]:
        """The best verifiable checkpoint per key; keys without one are absent."""
        out: dict[str, Checkpoint] = {}
        for key, candidates in self._best.items():
            for manifest in candidates:
                checkpoint = self._assemble(key, manifest)
                if checkpoint is not None:
                    out[key] = checkpoint
                    break
        return out

    def slot_chunks(self) -> dict[str, dict[str, int]]:
        """Per key, how many chunks each slot holds now (so a writer can tombstone extras)."""
        out: dict[str, dict[str, int]] = {}
        for key, slot, index in self._chunks:
            counts = out.setdefault(key, {})
            counts[slot] = max(counts.get(slot, 0), index + 1)
        return out

    def _assemble(self, key: str, manifest: _Manifest) -> Checkpoint | None:
        h = manifest.header
        if h["chunks"] == 0:
            blob = manifest.inline
        else:
            parts = []
            for i in range(int(h["chunks"])):
                chunk = self._chunks.get((key, h["slot"], i))
                if chunk is None or chunk[0] != h["id"]:
                    self._reject(key, f"checkpoint {h['id']} at offset {h['offset']}: chunk {i} missing or overwritten")
                    return None
                parts.append(chunk[1])
            blob = b"".join(parts)
        if len(blob) != h.get("size") or hashlib.sha256(blob).hexdigest() != h.get("sha256"):
            self._reject(key, f"checkpoint {h['id']} at offset {h['offset']}: checksum mismatch")
            return None
        try:
            payload = zlib.decompress(blob)
        except zlib.error as exc:
            self._reject(key, f"checkpoint {h['id']}: cannot decompress: {exc}")
            return None
        return Checkpoint(key, int(h["offset"]), payload, h["id"], h["slot"], int(h["chunks"]), float(h.get("written_at", 0.0)))
