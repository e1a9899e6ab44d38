"""Annotation templates in the subset of Prometheus' syntax that alert texts use.

``{{ $labels.service }}``, ``{{ $value }}``, ``{{ $evidence.threshold }}`` and the pipes
``humanize``, ``humanizePercentage``, ``humanizeDuration`` and ``printf "%.2f"``.
Templates are compiled when rules load, so an unknown variable or function fails
``rules check`` instead of rendering garbage in a page at 3 a.m.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Template", "compile_template"]

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_VAR = re.compile(r"^\$(labels|evidence)\.([A-Za-z_][A-Za-z0-9_]*)$|^\$(value)$")
_PRINTF = re.compile(r'^printf\s+"(%[-+ 0#]?\d*(?:\.\d+)?[dfegsx%])"$')


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
        except (TypeError, ValueError):
            return str(v)

    return apply


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


@dataclass(frozen=True)
class Template:
    """A compiled template; ``render`` never raises on missing values (they render empty)."""

    source: str
    _parts: tuple[str | Callable[[Mapping[str, str], float, Mapping[str, Any]], str], ...]

    def render(self, labels: Mapping[str, str], value: float, evidence: Mapping[str, Any]) -> str:
        return "".join(p if isinstance(p, str) else p(labels, value, evidence) for p in self._parts)


def compile_template(text: str, known_labels: Collection[str] | None = None) -> Template:
    """Compile ``text``; ``ValueError`` says which action is wrong and why."""
    parts: list[Any] = []
    pos = 0
    for m in _ACTION.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(_compile_action(m.group(1).strip(), known_labels))
        pos = m.end()
    rest = text[pos:]
    if "{{" in rest or "}}" in rest:
        raise ValueError(f"unbalanced braces in template {text!r}")
    if rest:
        parts.append(rest)
    return Template(text, tuple(parts))


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
            v = f(v)
        return str(v)

    return render
