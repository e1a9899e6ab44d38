"""The drift detector's evidence: summaries of the reference and of the current window,
the latter computed only when a page is rendered, and compact checkpoint encodings."""

from __future__ import annotations

import base64
import math
import sys
from array import array
from collections.abc import Mapping
from typing import Any

__all__ = ["LazyEvidence", "num", "pack", "summary", "unpack"]


class LazyEvidence(Mapping[str, Any]):
    """Evidence whose current-window summary is computed when first read: a drift stays
    active for many events, and most verdicts are never rendered."""

    __slots__ = ("_eager", "_window", "_all")

    def __init__(self, eager: dict[str, Any], window: array) -> None:
        self._eager, self._window, self._all = eager, window, None

    def _full(self) -> dict[str, Any]:
        if self._all is None:
            self._all = {**self._eager, **summary("current", self._window.tolist())}
        return self._all

    def __getitem__(self, key: str) -> Any:
        return self._full()[key]

    def __iter__(self) -> Any:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())

    def __repr__(self) -> str:
        return repr(self._full())


def summary(prefix: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    k = len(v) - 1
    return {f"{prefix}_mean": math.fsum(v) / len(v), f"{prefix}_p05": v[round(0.05 * k)],
            f"{prefix}_p50": v[round(0.5 * k)], f"{prefix}_p95": v[round(0.95 * k)]}


def pack(values: Any, typecode: str = "f") -> str:
    """Little-endian floats, base64: float32 for the window (evidence only), float64 knots."""
    packed = array(typecode, values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def unpack(text: str, typecode: str = "f") -> list[float]:
    values = array(typecode)
    values.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def num(v: float) -> float | None:
    return v if math.isfinite(v) else None
