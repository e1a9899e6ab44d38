"""Prometheus label selectors (``{service="checkout", model=~"fraud-.*"}``) over event fields.

SREs already write these every day; the same four operators (``=``, ``!=``, ``=~``,
``!~``) behave as in PromQL: regexes are fully anchored and a missing field reads as
the empty string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .fields import field_getter

__all__ = ["Matcher", "parse_selector"]

_MATCHER = re.compile(
    r'\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_.\-]+)?)\s*'
    r'(?P<op>=~|!~|!=|=)\s*'
    r'(?P<value>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')\s*(?P<sep>,|$)'
)


@dataclass(frozen=True)
class Matcher:
    """One ``name op "value"`` test against an event."""

    name: str
    op: str
    value: str

    def compile(self) -> Callable[[Any], bool]:
        get = field_getter(self.name)
        value = self.value

        def read(event: Any) -> str:
            got = get(event)
            return "" if got is None else str(got)

        if self.op == "=":
            return lambda event: read(event) == value
        if self.op == "!=":
            return lambda event: read(event) != value
        pattern = re.compile(value)
        if self.op == "=~":
            return lambda event: pattern.fullmatch(read(event)) is not None
        return lambda event: pattern.fullmatch(read(event)) is None


def parse_selector(text: str) -> list[Matcher]:
    """Matchers from ``{...}``; ``ValueError`` names the part that does not parse."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f'selector must be wrapped in braces, like {{service="checkout"}}, got {text!r}')
    body = body[1:-1].strip()
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if not m:
            raise ValueError(f"cannot parse matcher at {body[pos:]!r} (expected name=\"value\", name=~\"regex\", ...)")
        raw = m.group("value")
        value = json.loads(raw) if raw.startswith('"') else raw[1:-1].replace("\\'", "'")
        matcher = Matcher(m.group("name"), m.group("op"), value)
        if matcher.op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r} for {matcher.name}: {exc}") from None
        matchers.append(matcher)
        pos = m.end()
    return matchers
