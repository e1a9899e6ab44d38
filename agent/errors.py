"""Every exception Watchkeeper raises on purpose, in one tree.

::

    WatchkeeperError                 catch this one
    ├── ConfigError                  settings or flags are wrong (carries a location)
    ├── RuleError                    a rules or rule-test file is wrong (carries file:line:col)
    │   └── RuleFileErrors           all the problems found in one pass over a file
    ├── DetectorError                a detector was given parameters it cannot work with
    ├── EventError                   one event is malformed; it goes to the dead-letter topic
    └── DeliveryError                an alert could not be delivered (yet); retried

A message says what went wrong, where, and what to do next. The CLI prints
``str(error)`` on one line and exits 1; tracebacks are for Watchkeeper's own bugs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DeliveryError",
    "DetectorError",
    "EventError",
    "Location",
    "RuleError",
    "RuleFileErrors",
    "WatchkeeperError",
]


class WatchkeeperError(Exception):
    """The base of every error Watchkeeper raises for a user to read."""


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a file, 1-based like editors and Prometheus print it."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class ConfigError(WatchkeeperError):
    """A setting (environment variable, flag or config file) is invalid."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class RuleError(WatchkeeperError):
    """One problem in a rules file, with the place it was found."""

    def __init__(self, reason: str, location: Location, context: str = "") -> None:
        self.reason = reason
        self.location = location
        self.context = context
        prefix = f"{location}: {context}: " if context else f"{location}: "
        super().__init__(prefix + reason)


class RuleFileErrors(RuleError):
    """Every problem found in one pass; ``str`` lists them one per line."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        if not errors:
            raise ValueError("RuleFileErrors needs at least one error")
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(first.reason, first.location, first.context)
        self.args = ("\n".join(str(e) for e in self.errors),)

    def __str__(self) -> str:
        return self.args[0]


class DetectorError(WatchkeeperError):
    """A detector's parameters are invalid (raised at construction, so at rules load)."""


class EventError(WatchkeeperError):
    """An event cannot be processed; ``reason`` goes into the dead letter."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DeliveryError(WatchkeeperError):
    """No Alertmanager accepted a notification; the caller retries with backoff."""
