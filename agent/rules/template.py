"""Annotation templates in the subset of Prometheus' syntax that alert texts use.

``{{ $labels.service }}``, ``{{ $value }}``, ``{{ $evidence.threshold }}`` and the pipes
``humanize``, ``humanizePercentage``, ``humanizeDuration`` and ``printf "%.2f"``.
Templates are compiled when rules load, so an unknown variable or function fails
``rules check`` instead of rendering garbage in a page at 3 a.m.

What a template renders is bounded, because the values it interpolates come from
producers: a ``printf`` width or precision over ``MAX_PRINTF_WIDTH`` /
``MAX_PRINTF_PRECISION`` fails when the rules load, and a rendered text is cut to
``bounds.MAX_VALUE_LENGTH`` characters (ending in an ellipsis). Rendering never raises:
a value a function cannot format is shown as text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .bounds import MAX_VALUE_LENGTH, bound_text

__all__ = ["MAX_PRINTF_PRECISION", "MAX_PRINTF_WIDTH", "Template", "compile_template"]

MAX_PRINTF_WIDTH = 64
"""The widest ``printf`` field (``%64d``); a wider one is a rule error."""
MAX_PRINTF_PRECISION = 32
"""The largest ``printf`` precision (``%.32f``); a larger one is a rule error."""

_VAR = re.compile(r"^\$(labels|evidence)\.([A-Za-z_][A-Za-z0-9_]*)$|^\$(value)$")
_PRINTF = re.compile(r'^printf\s+"(%[-+ 0#]?(?P<width>\d*)(?:\.(?P<precision>\d+))?[dfegsx%])"$')


def _humanize(v: Any) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return str(v)
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.4g}{suffix}"
    return f"{v:.4g}"


def _percentage(v: Any) -> str:
    return f"{v * 100:.4g}%" if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def _duration(v: Any) -> str:
    """Prometheus' ``humanizeDuration``: ``1m 30s``, ``1h 0m 0s``, ``1.5s``, ``500ms``.

    From a minute up, whole days, hours, minutes and seconds (the fraction cut off, as
    Prometheus does); under a minute four significant digits, with m/u/n... prefixes
    under a second.

    >>> [_duration(v) for v in (90, 3600, 93784.9, 59.99, 1.5, 0.5, 0.000123, 0, -90, float("inf"))]
    ['1m 30s', '1h 0m 0s', '1d 2h 3m 4s', '59.99s', '1.5s', '500ms', '123us', '0s', '-1m 30s', '+Inf']
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    v = float(v)
    if not math.isfinite(v):
        return _go_g(v)
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        whole = int(abs(v))
        days, hours, minutes, seconds = whole // 86400, whole // 3600 % 24, whole // 60 % 60, whole % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_go_g(abs(v))}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_go_g(v)}{prefix}s"


def _go_g(v: float) -> str:
    """Go's ``%.4g``: as Python's, but NaN and +Inf spelled as Go does."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.4g}"


_FUNCS: dict[str, Callable[[Any], str]] = {
    "humanize": _humanize,
    "humanizePercentage": _percentage,
    "humanizeDuration": _duration,
}


def _printf(fmt: str) -> Callable[[Any], str]:
    def apply(v: Any) -> str:
        try:
            return fmt % v
        except (TypeError, ValueError, OverflowError):  # %d of inf, %x of a float, ...
            return _text(v)

    return apply


def _check_printf(fmt: str, width: str, precision: str | None) -> None:
    """Refuse a ``printf`` that would pad or extend a value past the bounds."""
    if width and (len(width.lstrip("0")) > 6 or int(width) > MAX_PRINTF_WIDTH):
        raise ValueError(f"printf width {width} in {fmt!r} is over the limit of {MAX_PRINTF_WIDTH}")
    if precision and (len(precision.lstrip("0")) > 6 or int(precision) > MAX_PRINTF_PRECISION):
        raise ValueError(f"printf precision {precision} in {fmt!r} is over the limit of {MAX_PRINTF_PRECISION}")


def _text(v: Any) -> str:
    """``str(v)``, or a placeholder when even that fails (an int of more than 4300 digits)."""
    try:
        return bound_text(str(v))
    except Exception:  # noqa: BLE001 - rendering never raises
        return f"<{type(v).__name__}>"


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else _text(v)


@dataclass(frozen=True)
class Template:
    """A compiled template; ``render`` never raises on missing values (they render empty)."""

    source: str
    _parts: tuple[str | Callable[[Mapping[str, str], float, Mapping[str, Any]], str], ...]

    def render(self, labels: Mapping[str, str], value: float, evidence: Mapping[str, Any]) -> str:
        """The text, at most ``MAX_VALUE_LENGTH`` characters; stops rendering once past it."""
        out: list[str] = []
        size = 0
        for part in self._parts:
            text = part if isinstance(part, str) else part(labels, value, evidence)
            text = text[: MAX_VALUE_LENGTH + 1]
            out.append(text)
            size += len(text)
            if size > MAX_VALUE_LENGTH:
                break
        return bound_text("".join(out))


def compile_template(text: str, known_labels: Collection[str] | None = None) -> Template:
    """Compile ``text``; ``ValueError`` says which action is wrong and why."""
    parts: list[Any] = []
    pos = 0
    for start, end, action in _actions(text):
        if start > pos:
            parts.append(text[pos:start])
        parts.append(_compile_action(action.strip(), known_labels))
        pos = end
    rest = text[pos:]
    if "{{" in rest or "}}" in rest:
        raise ValueError(f"unbalanced braces in template {text!r}")
    if rest:
        parts.append(rest)
    return Template(text, tuple(parts))


def _actions(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, inside)`` of each ``{{ ... }}``, the shortest from each ``{{``.

    What ``re.finditer(r"\\{\\{(.*?)\\}\\}", text, re.S)`` finds, in linear time: that regex
    rescans to the end of the text from every unclosed ``{{`` (``"{{" * 20000`` took a
    minute), and rule files are read while the agent runs.

    >>> list(_actions("a {{ $value }} b {{x}}{{"))
    [(2, 14, ' $value '), (17, 22, 'x')]
    """
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            return
        yield start, end + 2, text[start + 2 : end]
        pos = end + 2


def _compile_action(action: str, known_labels: Collection[str] | None) -> Callable[..., str]:
    pipeline = [p.strip() for p in action.split("|")]
    var = _VAR.match(pipeline[0])
    if not var:
        raise ValueError(
            f"unknown template variable {{{{ {pipeline[0]} }}}} (use $labels.NAME, $value or $evidence.NAME)"
        )
    kind, name = (var.group(1), var.group(2)) if var.group(1) else ("value", "")
    if kind == "labels" and known_labels is not None and name not in known_labels:
        carried = ", ".join(sorted(known_labels)) or "none"
        raise ValueError(f"$labels.{name} is not a label of this rule's alerts (they carry: {carried})")
    funcs: list[Callable[[Any], str]] = []
    for fn in pipeline[1:]:
        printf = _PRINTF.match(fn)
        if printf:
            _check_printf(printf.group(1), printf.group("width"), printf.group("precision"))
            funcs.append(_printf(printf.group(1)))
        elif fn in _FUNCS:
            funcs.append(_FUNCS[fn])
        else:
            raise ValueError(f"unknown template function {fn!r} (known: {', '.join(_FUNCS)}, printf \"%.2f\")")

    def render(labels: Mapping[str, str], value: float, evidence: Mapping[str, Any]) -> str:
        if kind == "labels":
            v: Any = labels.get(name, "")
        elif kind == "evidence":
            v = evidence.get(name, "")
        else:
            v = value
        if not funcs:
            return _plain(v)
        for f in funcs:
            try:
                v = f(v)
            except Exception:  # noqa: BLE001 - e.g. humanize of an int too large for a float
                v = _text(v)
        return _text(v)

    return render
