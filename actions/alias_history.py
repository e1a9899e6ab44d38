"""Who held a registry alias before, and which version a rollback should go back to.

MLflow keeps only where an alias points *now*. A rollback needs where it pointed
*before*, so every move Watchkeeper makes is appended to a registered-model tag,
``watchkeeper.alias.<alias>.history``: a JSON list of the last :data:`HISTORY_LIMIT`
moves, oldest first, each ``{"v": "2", "from": "3", "ts": 1764120000.0, "by": "wk-1",
"key": "<decision key>", "reason": "..."}``. Tags, not a file or the agent's own
state, because they live with the model in the registry: they survive agent restarts
and redeploys, every agent (and a human in the MLflow UI) reads the same history, and
they go away with the model. The list is bounded (entries and characters), so a model
rolled back a thousand times keeps a small tag.

A version rolled away from is tagged ``watchkeeper.bad`` (JSON: the alert that caused
it) and is never chosen as a rollback target again until someone deletes the tag.

This module is pure (no MLflow import): parsing is lenient, because the tag is user
editable and bad input must never crash the agent: entries that do not parse are
dropped, and a tag that is not a JSON list reads as no history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BAD_TAG",
    "HISTORY_LIMIT",
    "HISTORY_MAX_CHARS",
    "Move",
    "VersionInfo",
    "append_move",
    "encode_history",
    "history_tag",
    "normalise_version",
    "parse_history",
    "previous_version",
]

HISTORY_LIMIT = 20
"""Moves kept per alias; older ones fall off (a rollback only ever looks a few back)."""

HISTORY_MAX_CHARS = 8000
"""Upper bound of the tag value: well under MLflow's limits, small enough to read in the UI."""

BAD_TAG = "watchkeeper.bad"
_REASON_CHARS = 200


def history_tag(alias: str) -> str:
    """The registered-model tag that holds ``alias``'s history."""
    return f"watchkeeper.alias.{alias}.history"


def normalise_version(value: Any) -> str:
    """Registry versions as canonical decimal strings: ``3``, ``"3"`` and ``" 03 "`` are ``"3"``.

    MLflow returns them as strings over REST and as ints from a local store; events
    carry either. ``ValueError`` for anything that is not a positive whole number.

    >>> normalise_version(3), normalise_version("03"), normalise_version(3.0)
    ('3', '3', '3')
    """
    if isinstance(value, bool):
        raise ValueError(f"not a registry version: {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"not a registry version: {value!r}")
        value = int(value)
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"not a registry version: {value!r}")
    return str(int(text))


@dataclass(frozen=True, slots=True)
class Move:
    """One move of an alias to ``version`` (from ``previous``), by whom, when and why.

    ``key`` is the decision key of the rollback that made the move ("" for a move
    observed or made by someone else): it is the idempotency mark a re-delivered
    alert finds.
    """

    version: str
    ts: float
    by: str = ""
    reason: str = ""
    key: str = ""
    previous: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": self.version, "ts": round(self.ts, 3), "by": self.by}
        if self.previous is not None:
            data["from"] = self.previous
        if self.key:
            data["key"] = self.key
        if self.reason:
            data["reason"] = self.reason[:_REASON_CHARS]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Move:
        """``ValueError``/``TypeError``/``KeyError`` when ``data`` is not a move."""
        previous = data.get("from")
        ts = float(data.get("ts", 0.0))
        if not math.isfinite(ts):
            raise ValueError("ts must be finite")
        return cls(
            version=normalise_version(data["v"]),
            ts=ts,
            by=str(data.get("by", ""))[:200],
            reason=str(data.get("reason", ""))[:_REASON_CHARS],
            key=str(data.get("key", ""))[:128],
            previous=None if previous is None else normalise_version(previous),
        )


def parse_history(text: str | None) -> list[Move]:
    """The moves in a history tag, oldest first; never raises (bad entries are dropped)."""
    if not text:
        return []
    try:
        raw = json.loads(text)
    except ValueError:
        return []
    if not isinstance(raw, list):
        return []
    moves: list[Move] = []
    for item in raw[-HISTORY_LIMIT:]:
        if not isinstance(item, Mapping):
            continue
        try:
            moves.append(Move.from_dict(item))
        except (ValueError, TypeError, KeyError):
            continue
    return moves


def encode_history(moves: Sequence[Move], *, limit: int = HISTORY_LIMIT, max_chars: int = HISTORY_MAX_CHARS) -> str:
    """The tag value: the newest ``limit`` moves that fit in ``max_chars`` (the newest always does)."""
    kept = [m.to_dict() for m in moves[-limit:]] if limit > 0 else []
    text = json.dumps(kept, separators=(",", ":"))
    while len(kept) > 1 and len(text) > max_chars:
        kept.pop(0)
        text = json.dumps(kept, separators=(",", ":"))
    return text


def append_move(moves: Sequence[Move], move: Move, *, holder: str | None = None) -> list[Move]:
    """``moves`` plus ``move``; first records ``holder`` as observed if the history does not end there.

    Someone (CI, a human in the UI) may have moved the alias without writing history;
    recording what was found keeps "who held it before" true for the next rollback.
    """
    out = list(moves)
    if holder is not None and (not out or out[-1].version != holder):
        out.append(Move(version=holder, ts=move.ts, by="observed", reason="alias found here"))
    out.append(move)
    return out[-HISTORY_LIMIT:]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What a rollback needs to know of one version: does it exist, is it usable, is it bad."""

    version: str
    ready: bool = True
    tags: Mapping[str, str] | None = None

    @property
    def bad(self) -> bool:
        return bool((self.tags or {}).get(BAD_TAG))


def previous_version(holder: str, history: Iterable[Move], versions: Mapping[str, VersionInfo]) -> tuple[str | None, str]:
    """The version to roll ``holder`` back to, and where it came from (``history`` / ``fallback``).

    First the newest history entry naming another version that still exists, is READY
    and is not tagged bad; then the highest version below ``holder`` that is READY and
    not bad. ``(None, "none")`` when there is none: the rollback is blocked, never
    guessed.
    """

    def usable(version: str) -> bool:
        info = versions.get(version)
        return info is not None and info.ready and not info.bad and version != holder

    for move in reversed(list(history)):
        if usable(move.version):
            return move.version, "history"
    lower = sorted((int(v) for v in versions if int(v) < int(holder) and usable(v)), reverse=True)
    if lower:
        return str(lower[0]), "fallback"
    return None, "none"
