"""Signatures on the agent's own topics: who may page, approve, or plant detector state.

The alerts topic is paged and remediated from, an ``approved`` record on the audit
topic releases a pending action, and a checkpoint on the state topic becomes detector
state. So a record there is acted on only when it carries a valid HMAC-SHA256 in the
``watchkeeper-sig`` header, ``<key id>:<hex digest>``, made with a key of the key file
(``topic_keys.py``). The MAC covers:

* a domain-separation prefix with the version and the topic's *role* (``alerts``,
  ``audit``, ``state``), so a record signed for one role is rejected on another (an
  alert snapshot cannot be replayed as an audit record, nor a checkpoint as an alert);
* the id of the key that signed it, so the header cannot be re-labelled;
* the record key and value, each length-prefixed, with ``null`` distinct from empty.

Headers other than the signature, the topic name, the partition and the timestamp are
not covered: a signature says *who wrote these bytes for this role*, not *when*. A
genuine record copied again is a re-send, which the readers already tolerate (the
notifier keeps the latest snapshot, the ledger deduplicates decisions); Kafka ACLs
(docs/security-topics.md, deploy/kafka/acls.sh) keep strangers from writing at all.

A reader that meets an unsigned or wrongly signed record ignores it (not paged, not
acted on, not restored), counts it in ``watchkeeper_records_rejected_total{topic,reason}``
and logs a sample; the offset still advances, so forged records never stall a topic.
Tombstones (``null`` values) on the state topic are not signed: compaction honours a
tombstone whatever its headers, so checking them would only make the two disagree; a
tombstone erases state, it cannot plant any.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from agent.logs import get_logger

from .selfmetrics import SelfMetrics
from .topic_keys import TopicKeys

__all__ = ["SIGNATURE_HEADER", "RecordAuth", "Rejection", "TopicRole", "sign", "verify"]

_log = get_logger(__name__)

SIGNATURE_HEADER = "watchkeeper-sig"
_CONTEXT = b"watchkeeper record signature v1\x00"
_LOGGED = 10  # rejections logged in full per reader; then one in _LOG_EVERY
_LOG_EVERY = 1000


class TopicRole(str, enum.Enum):
    """What a topic is for; part of every signature (domain separation)."""

    ALERTS = "alerts"
    AUDIT = "audit"
    STATE = "state"


class Rejection(str, enum.Enum):
    """Why a record was not accepted; the ``reason`` label of the metric."""

    UNSIGNED = "unsigned"
    MALFORMED = "malformed"  # a signature header that is not <16 hex>:<64 hex>, or several
    UNKNOWN_KEY = "unknown_key"  # signed with a key this file does not hold (rotated out, or another fleet's)
    BAD_SIGNATURE = "bad_signature"


class SignedRecord(Protocol):
    """The part of aiokafka's ``ConsumerRecord`` a signature check reads."""

    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def _field(data: bytes | None) -> bytes:
    return b"\xff" if data is None else b"\x00" + len(data).to_bytes(8, "big") + data


def _digest(secret: bytes, role: TopicRole, key_id: str, key: bytes | None, value: bytes | None) -> str:
    message = b"".join((_CONTEXT, role.value.encode(), b"\x00", key_id.encode(), b"\x00", _field(key), _field(value)))
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(keys: TopicKeys, role: TopicRole, key: bytes | None, value: bytes | None) -> str:
    """The ``watchkeeper-sig`` header value of one record, made with the signing key."""
    signer = keys.signing
    return f"{signer.key_id}:{_digest(signer.secret, role, signer.key_id, key, value)}"


def verify(
    keys: TopicKeys, role: TopicRole, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, Any]] | None
) -> Rejection | None:
    """None when the record is authentic for ``role``, else why not."""
    found = [v for k, v in headers or () if k == SIGNATURE_HEADER]
    if not found:
        return Rejection.UNSIGNED
    if len(found) != 1:
        return Rejection.MALFORMED
    raw = found[0]
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes | bytearray) else str(raw)
    except UnicodeDecodeError:
        return Rejection.MALFORMED
    key_id, sep, mac = text.partition(":")
    if not sep or len(key_id) != 16 or len(mac) != 64 or not _is_hex(key_id) or not _is_hex(mac):
        return Rejection.MALFORMED
    known = keys.find(key_id)
    if known is None:
        return Rejection.UNKNOWN_KEY
    if not hmac.compare_digest(_digest(known.secret, role, key_id, key, value), mac):
        return Rejection.BAD_SIGNATURE
    return None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class RecordAuth:
    """Signs records for one topic and admits only authentic ones, counting the rest.

    Parameters
    ----------
    keys:
        The key file's keys (the first signs, all verify).
    role:
        The topic's role, bound into every signature.
    topic:
        The topic's name, for the metric and the log.
    metrics:
        Where rejections are counted (None: logged only, as in the CLI).
    """

    def __init__(self, keys: TopicKeys, role: TopicRole, *, topic: str, metrics: SelfMetrics | None = None) -> None:
        self.keys = keys
        self.role = role
        self.topic = topic
        self._metrics = metrics
        self.rejected = 0

    def headers(self, key: bytes | None, value: bytes | None) -> dict[str, str]:
        """The signature header of one record (FastStream's ``publish(headers=...)``)."""
        return {SIGNATURE_HEADER: sign(self.keys, self.role, key, value)}

    def header_list(self, key: bytes | None, value: bytes | None) -> list[tuple[str, bytes]]:
        """The same, as aiokafka's ``send(headers=...)`` takes it."""
        return [(SIGNATURE_HEADER, sign(self.keys, self.role, key, value).encode())]

    def admit(self, record: Any) -> bool:
        """Whether ``record`` is authentic; a rejection is counted and logged in sample."""
        reason = verify(self.keys, self.role, record.key, record.value, getattr(record, "headers", None))
        if reason is None:
            return True
        self.rejected += 1
        if self._metrics is not None:
            self._metrics.records_rejected.labels(self.topic, reason.value).inc()
        if self.rejected <= _LOGGED or self.rejected % _LOG_EVERY == 0:
            _log.warning(
                "ignoring a record that is not signed with the topic key",
                topic=self.topic,
                partition=getattr(record, "partition", None),
                offset=getattr(record, "offset", None),
                reason=reason.value,
                rejected=self.rejected,
            )
        return False

    def admitted(self, records: Iterable[Any]) -> list[Any]:
        """The authentic records of a batch, in order."""
        return [r for r in records if self.admit(r)]

