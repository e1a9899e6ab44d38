"""A compiled rule: what it watches, how it keys series, what it feeds its detector.

Built once by the loader; the engine only calls ``matches``, ``series`` and ``observe``
on the hot path, so everything that can be decided at load time (field readers,
compiled regexes, templates, detector class) is decided there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import Location
from detectors.base import Detector

from .template import Template

__all__ = ["Rule", "RuleSet"]


@dataclass(frozen=True, eq=False)
class Rule:
    """One alerting rule of a group, ready to evaluate."""

    id: str
    group: str
    name: str
    source: str
    selector: str
    by: tuple[str, ...]
    field: str
    equals: str | None
    detector_class: type[Detector]
    detector_params: Mapping[str, Any]
    for_s: float
    keep_firing_for_s: float
    labels: Mapping[str, str]
    annotations: Mapping[str, Template]
    actions: tuple[Mapping[str, Any], ...]
    location: Location
    match_fields: tuple[str, ...] = ()
    _matchers: tuple[Callable[[Any], bool], ...] = field(repr=False, default=())
    _by_getters: tuple[Callable[[Any], Any], ...] = field(repr=False, default=())
    _by_labels: tuple[str, ...] = field(repr=False, default=())
    _field_getter: Callable[[Any], Any] | None = field(repr=False, default=None)
    _by_fast: Callable[[Any], tuple[str, ...]] | None = field(repr=False, default=None)
    _categorical: bool = field(repr=False, default=False)
    _vector: bool = field(repr=False, default=False)

    def matches(self, event: Any) -> bool:
        for matcher in self._matchers:
            if not matcher(event):
                return False
        return True

    def series(self, event: Any) -> tuple[str, ...]:
        """The series key: the values of the ``by`` fields (missing ones read as "")."""
        if self._by_fast is not None:
            return self._by_fast(event)
        return tuple("" if (v := get(event)) is None else str(v) for get in self._by_getters)

    def series_labels(self, key: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self._by_labels, key, strict=True))

    def observe(self, event: Any) -> float | str | tuple[float, ...] | None:
        """What the detector sees (a number, or a category for categorical detectors);
        None when the event does not carry it."""
        assert self._field_getter is not None
        raw = self._field_getter(event)
        if self._categorical:
            return None if raw is None else str(raw)
        if self._vector:  # an embedding: the wire contract already bounded and checked it
            return raw if isinstance(raw, tuple) and raw else None
        if self.equals is not None:
            return None if raw is None else float(str(raw) == self.equals)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        return None

    def new_detector(self) -> Detector:
        return self.detector_class(**self.detector_params)

    def alert_labels(self, key: tuple[str, ...]) -> dict[str, str]:
        """Series labels, then the rule's labels, then ``alertname``: as Prometheus merges them."""
        labels = self.series_labels(key)
        labels.update(self.labels)
        labels["alertname"] = self.name
        return labels


@dataclass(frozen=True)
class RuleSet:
    """All rules loaded from a set of files, indexed by source for dispatch."""

    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()

    def for_source(self, source: str) -> tuple[Rule, ...]:
        return self._by_source.get(source, ())

    @property
    def _by_source(self) -> dict[str, tuple[Rule, ...]]:
        cached = self.__dict__.get("_index")
        if cached is None:
            index: dict[str, list[Rule]] = {}
            for rule in self.rules:
                index.setdefault(rule.source, []).append(rule)
            cached = {k: tuple(v) for k, v in index.items()}
            object.__setattr__(self, "_index", cached)
        return cached

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    def __len__(self) -> int:
        return len(self.rules)
