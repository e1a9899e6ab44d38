"""Prometheus label selectors (``{service="checkout", model=~"fraud-.*"}``) over event fields.

SREs already write these every day; the same four operators (``=``, ``!=``, ``=~``,
``!~``) behave as in PromQL: regexes are fully anchored and a missing field reads as
the empty string.

The values a regex runs against come from producers, so regexes are RE2 (Prometheus'
engine too), which matches in time linear in the value: Python's backtracking ``re``
spends exponential time on a nested quantifier such as ``(a+)+$``. RE2 has no
backreferences or lookarounds; a pattern using them, or longer than
``MAX_PATTERN_LENGTH``, fails when the rules load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from .fields import field_getter

__all__ = ["MAX_PATTERN_LENGTH", "Matcher", "compile_regex", "parse_selector"]

MAX_PATTERN_LENGTH = 1024
"""The longest regex a matcher may use, in characters."""

_MEMO_SIZE = 4096
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern to stderr


def compile_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2; ``ValueError`` says why it cannot be.

    >>> compile_regex("fraud-.*").fullmatch("fraud-3") is not None
    True
    >>> compile_regex(r"(a)\\1")
    Traceback (most recent call last):
    ...
    ValueError: RE2 cannot compile it: invalid escape sequence: \\1 (backreferences and lookarounds are not supported)
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"regex is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}")
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"RE2 cannot compile it: {reason} (backreferences and lookarounds are not supported)") from None


class _FullMatch:
    """Does a value match the whole regex? Answers are memoised: producers repeat the same
    few names, and a dict lookup is cheaper than a call into RE2. The memo is emptied when
    full, so a flood of invented names costs RE2 calls, never memory."""

    def __init__(self, pattern: str) -> None:
        self._regex = compile_regex(pattern)
        self.memo: dict[str, bool] = {}

    def __call__(self, value: str) -> bool:
        known = self.memo.get(value)
        if known is not None:
            return known
        try:
            answer = self._regex.fullmatch(value) is not None
        except UnicodeEncodeError:
            # a lone surrogate has no UTF-8 form; as one '?' it still counts as one character
            answer = self._regex.fullmatch(value.encode("utf-8", "replace").decode("utf-8")) is not None
        if len(self.memo) >= _MEMO_SIZE:
            self.memo.clear()
        self.memo[value] = answer
        return answer

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
        # the memo is read inline: on the hot path a dict lookup, no further call
        full_match = _FullMatch(value)
        memo, slow, wanted = full_match.memo, full_match, self.op == "=~"

        def test(event: Any) -> bool:
            got = get(event)
            text = "" if got is None else str(got)
            answer = memo.get(text)
            if answer is None:
                answer = slow(text)
            return answer is wanted

        return test


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
                compile_regex(value)
            except ValueError as exc:
                raise ValueError(f"invalid regex {_shown(value)} for {matcher.name}: {exc}") from None
        matchers.append(matcher)
        pos = m.end()
    return matchers


def _shown(pattern: str) -> str:
    """The pattern for an error message, cut when long (the message is one line)."""
    return repr(pattern) if len(pattern) <= 80 else repr(pattern[:80]) + f"... ({len(pattern)} characters)"
