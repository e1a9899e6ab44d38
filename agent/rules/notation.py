"""promtool's expanding series notation, extended with words for string fields.

``'1+2x3'`` is ``1 3 5 7``; ``'5x2'`` is ``5 5 5``; ``'_'`` is a missing sample and
``'_x3'`` three of them (all as in ``promtool test rules``); a word repeats the same
way, so ``'okx2 error'`` is ``ok ok ok error``.
"""

from __future__ import annotations

import re

__all__ = ["MISSING", "expand"]

MISSING = None
_TOKEN = re.compile(
    r"^(?P<v>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|_|[A-Za-z][A-Za-z0-9_.\-]*?)"
    r"(?P<d>[-+](?:\d+(?:\.\d*)?|\.\d+))?"
    r"(?:x(?P<n>\d+))?$"
)


def expand(text: str) -> list[float | str | None]:
    """Values of one notation string; ``ValueError`` names the token it cannot read."""
    out: list[float | str | None] = []
    for token in str(text).split():
        m = _TOKEN.match(token)
        if not m:
            raise ValueError(f"cannot read {token!r} (write e.g. '100x10', '1+2x5', '_', 'errorx3')")
        raw, delta, count = m.group("v"), m.group("d"), m.group("n")
        n = int(count) if count is not None else None
        if raw == "_":
            if delta:
                raise ValueError(f"{token!r}: a missing sample cannot have a step")
            out.extend([MISSING] * (n if n is not None else 1))
            continue
        try:
            start: float | str = float(raw)
        except ValueError:
            start = raw
        if isinstance(start, str):
            if delta and delta.startswith("-"):
                start += delta  # '-' belongs to words: 'gpt-4' is a model name, not 'gpt' minus 4
            elif delta:
                raise ValueError(f"{token!r}: only numbers can have a step")
            out.extend([start] * ((n or 0) + 1))
            continue
        step = float(delta) if delta else 0.0
        if n is None:
            out.append(start)
        else:
            out.extend(start + step * i for i in range(n + 1))
    return out
