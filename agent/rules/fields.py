"""Which event fields a rule may name, per source, and how to read them fast.

A rule names fields in ``match``, ``by`` and ``detector.field``: a top-level field
(``latency_ms``), a derived one (``total_tokens``, ``mem_used_ratio``), or a map entry
(``labels.region``, ``features.age``). Names are checked at load time, so a typo fails
``rules check`` instead of silently matching nothing.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from agent.model import FeedbackEvent, GpuEvent, InferenceEvent, LlmEvent, RetrievalEvent

__all__ = [
    "DEFAULT_BY",
    "DERIVED",
    "EVENT_TYPES",
    "MAP_FIELDS",
    "VECTOR_FIELDS",
    "check_field",
    "field_getter",
    "series_reader",
    "known_fields",
    "series_label",
]

EVENT_TYPES: dict[str, type] = {
    "inference": InferenceEvent,
    "llm": LlmEvent,
    "gpu": GpuEvent,
    "retrieval": RetrievalEvent,
    "feedback": FeedbackEvent,
}
DERIVED: dict[str, tuple[str, ...]] = {
    "llm": ("total_tokens", "spend_usd", "flagged", "refused"),
    "gpu": ("mem_used_ratio",),
    "retrieval": ("empty",),
}
MAP_FIELDS: dict[str, tuple[str, ...]] = {
    "inference": ("labels", "features"),
    "llm": ("labels",),
    "gpu": ("labels",),
    "retrieval": ("labels",),
    "feedback": ("labels",),
}
VECTOR_FIELDS: dict[str, tuple[str, ...]] = {"llm": ("embedding",), "retrieval": ("embedding",)}
DEFAULT_BY: dict[str, tuple[str, ...]] = {
    "inference": ("service", "model"),
    "llm": ("service", "model"),
    "gpu": ("node", "gpu"),
    "retrieval": ("service", "index", "index_version"),
    "feedback": ("service", "prompt_version"),
}


def series_reader(source: str, names: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]] | None:
    """A one-call reader of the series key when every ``by`` field is a required string.

    ``attrgetter`` with several names returns the tuple itself, which is most of the
    engine's per-event cost saved; other keys (map entries, optional fields) take the
    general path.
    """
    model = EVENT_TYPES[source]
    for name in names:
        info = model.model_fields.get(name)
        if info is None or not info.is_required() or info.annotation is not str:
            return None
    if len(names) == 1:
        only = operator.attrgetter(names[0])
        return lambda event: (only(event),)
    if not names:
        return lambda event: ()
    return operator.attrgetter(*names)


def known_fields(source: str) -> tuple[str, ...]:
    """Plain field names of a source (map fields excluded), for checks and suggestions."""
    model = EVENT_TYPES[source]
    plain = [n for n in model.model_fields if n not in MAP_FIELDS[source] and n != "type"]
    return tuple(plain) + DERIVED.get(source, ())


def check_field(source: str, name: str) -> str | None:
    """None if ``name`` is readable on ``source`` events, else the reason it is not."""
    head, _, key = name.partition(".")
    if key:
        if head in MAP_FIELDS[source]:
            return None
        return f"{head!r} is not a map field of {source} events (map fields: {', '.join(MAP_FIELDS[source])})"
    if name in known_fields(source):
        return None
    return f"unknown field {name!r} for source {source}"


def field_getter(name: str, prices: Any = None) -> Callable[[Any], Any]:
    """A fast reader of one field; a missing map key reads as None.

    ``spend_usd`` (llm) is the event's ``cost_usd`` or, when absent, its tokens priced
    by ``prices`` (a ``PriceTable``).
    """
    if name == "spend_usd":
        if prices is None:
            return operator.attrgetter("cost_usd")
        return prices.spend
    head, _, key = name.partition(".")
    if key:
        attr = operator.attrgetter(head)
        return lambda event: attr(event).get(key)
    return operator.attrgetter(name)


def series_label(name: str) -> str:
    """The alert label a field becomes: ``labels.region`` -> ``region``."""
    return name.partition(".")[2] or name
