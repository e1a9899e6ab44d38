"""How long a rendered annotation or an alert's label value may be, and how it is cut.

Label values come from event fields any producer sets, and annotation templates
interpolate them (and ``printf`` pads them), so what leaves the agent for Alertmanager,
Slack or a Kubernetes API call is bounded here, once, instead of trusting every
producer and every rule author. A cut value ends in an ellipsis so a reader sees that
it was cut.
"""

from __future__ import annotations

import hashlib

__all__ = ["ELLIPSIS", "MAX_VALUE_LENGTH", "bound_label_value", "bound_text"]

MAX_VALUE_LENGTH = 4096
"""The most characters a rendered annotation or an alert label value has (ellipsis included)."""

ELLIPSIS = "…"


def bound_text(text: str, limit: int = MAX_VALUE_LENGTH) -> str:
    """``text`` cut to ``limit`` characters, the last of them an ellipsis when cut.

    >>> bound_text("abcdef", 4)
    'abc…'
    >>> bound_text("abc", 4)
    'abc'
    """
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def bound_label_value(value: str, limit: int = MAX_VALUE_LENGTH) -> str:
    """A label value cut to ``limit`` characters, keeping two long values that differ apart.

    An alert is identified by its labels, so a plain cut would merge two series whose
    values share a prefix into one alert; the cut value ends with an ellipsis and a
    digest of the whole value instead.

    >>> bound_label_value("x" * 30, 20)
    'xxxxxxxxx…666a596df2'
    >>> bound_label_value("short", 20)
    'short'
    """
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return value[: limit - 1 - len(digest)] + ELLIPSIS + digest
