"""Which MLflow models or prompts a rule's action may touch: exact names or RE2 patterns.

A rollback's target name comes from an alert label (``{{ $labels.model }}``), and labels
come from event fields any producer chooses; without a list, one forged event rolls back
another team's model. So a ``rollback`` entry must say what it may touch::

    - type: rollback
      allowed:
        names: [fraud-detector]            # exact names
        patterns: ["fraud-[a-z0-9-]+"]     # RE2, matched against the whole name

Patterns are RE2 (``google-re2``: linear time, no backtracking, so a producer-chosen name
cannot stall the agent) and must match the whole name (``fraud-.*`` does not match
``x-fraud-1``). They are compiled when the rule loads: a pattern RE2 refuses is a rule
error with file:line. A name outside the list is refused before any registry call with
:class:`~actions.base.TargetRefused` (guard ``allowed-names``), which the remediator
audits and counts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from .base import TargetRefused

__all__ = ["AllowedNames"]

_PATTERN_MAX = 512
_RE2_MAX_MEM = 1 << 20  # 1 MiB of program per pattern: far above any sane name pattern


def _compile(pattern: str) -> Any:
    import re2

    options = re2.Options()
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False
    return re2.compile(pattern, options)


class AllowedNames(BaseModel):
    """Exact ``names`` and full-match RE2 ``patterns``; a name is allowed when either says so.

    >>> allowed = AllowedNames(names=["fraud-detector"], patterns=["churn-[0-9]+"])
    >>> allowed.check("churn-7", "model")
    'churn-7'
    >>> allowed.check("churn-7x", "model")
    Traceback (most recent call last):
    ...
    actions.base.TargetRefused: model 'churn-7x' is not in the rule's allowed names (names: fraud-detector; patterns: churn-[0-9]+)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: tuple[str, ...] = Field((), max_length=1000)
    patterns: tuple[str, ...] = Field((), max_length=100)
    _compiled: tuple[Any, ...] = PrivateAttr(default=())

    @field_validator("names")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name or len(name) > 256:
                raise ValueError(f"allowed name {name[:80]!r} must be 1 to 256 characters")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern or len(pattern) > _PATTERN_MAX:
                raise ValueError(f"allowed pattern must be 1 to {_PATTERN_MAX} characters")
            try:
                _compile(pattern)
            except Exception as exc:  # noqa: BLE001 - re2.error, or a program over max_mem
                raise ValueError(f"allowed pattern {pattern!r} is not a valid RE2 pattern: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something(self) -> AllowedNames:
        if not self.names and not self.patterns:
            raise ValueError("allowed needs at least one of names or patterns (an empty list allows nothing)")
        self._compiled = tuple(_compile(p) for p in self.patterns)
        return self

    def allows(self, name: str) -> bool:
        return name in self.names or any(p.fullmatch(name) is not None for p in self._compiled)

    def check(self, name: str, what: str) -> str:
        """``name`` if allowed, else :class:`TargetRefused` (guard ``allowed-names``) naming the list."""
        if self.allows(name):
            return name
        shown = name[:80] + ("..." if len(name) > 80 else "")
        listed = "; ".join(
            part for part in (
                f"names: {', '.join(self.names)}" if self.names else "",
                f"patterns: {', '.join(self.patterns)}" if self.patterns else "",
            ) if part
        )
        raise TargetRefused("allowed-names", f"{what} {shown!r} is not in the rule's allowed names ({listed})")
