"""``{{ $labels.NAME }}`` in action parameters: which Deployment, namespace or model an alert means.

Actions may not import ``agent.rules`` (layering), and they need only this one form of
Prometheus' template syntax, so it is here in a few lines. A plain string without
``{{`` is a literal. A label the alert lacks is an ``ActionFailed`` naming it, because
acting on a guessed target is worse than not acting; for the same reason a rendered
value longer than ``MAX_RENDERED_LENGTH`` (label values come from producers) is refused
rather than cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from actions.base import ActionFailed

__all__ = ["MAX_RENDERED_LENGTH", "check_label_template", "render_label_template"]

MAX_RENDERED_LENGTH = 4096
"""The longest parameter a template may render to, in characters (as alert label values)."""

_LABEL = re.compile(r"^\$labels\.([A-Za-z_][A-Za-z0-9_]*)$")


def _actions(template: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, inside stripped)`` of each ``{{ ... }}``, the shortest from each ``{{``.

    A scan in linear time: the regex ``\\{\\{\\s*(.*?)\\s*\\}\\}`` this replaces rescanned the
    rest of the text from every unclosed ``{{`` (a minute for ``"{{" * 20000``).

    >>> list(_actions("{{ $labels.a }}-{{$labels.b}}{{"))
    [(0, 15, '$labels.a'), (16, 29, '$labels.b')]
    """
    pos = 0
    while (start := template.find("{{", pos)) >= 0:
        end = template.find("}}", start + 2)
        if end < 0:
            return
        yield start, end + 2, template[start + 2 : end].strip()
        pos = end + 2


def check_label_template(template: str) -> str:
    """Validate at rule load: only ``{{ $labels.NAME }}`` actions are allowed.

    >>> check_label_template("{{ $labels.service }}-canary")
    '{{ $labels.service }}-canary'
    >>> check_label_template("{{ $value }}")
    Traceback (most recent call last):
    ...
    ValueError: only {{ $labels.NAME }} may be used here, not {{ $value }}
    """
    for _, _, action in _actions(template):
        if not _LABEL.match(action):
            raise ValueError(f"only {{{{ $labels.NAME }}}} may be used here, not {{{{ {action} }}}}")
    return template


def render_label_template(template: str, labels: Mapping[str, str], what: str) -> str:
    """Fill ``template`` from an alert's labels; ``what`` names the parameter in errors.

    >>> render_label_template("{{ $labels.service }}", {"service": "ranker"}, "deployment")
    'ranker'
    >>> render_label_template("{{ $labels.namespace }}", {}, "namespace")
    Traceback (most recent call last):
    ...
    actions.base.ActionFailed: namespace: the alert has no label 'namespace' (template '{{ $labels.namespace }}')
    """

    # Only the rule's own text is trimmed: a label value is used as sent, so "web\n" is
    # refused as a name rather than quietly read as "web".
    template = template.strip()
    out: list[str] = []
    pos = 0
    for start, end, action in _actions(template):
        found = _LABEL.match(action)
        name = found.group(1) if found else action
        value = labels.get(name, "")
        if not value:
            raise ActionFailed(f"{what}: the alert has no label {name!r} (template {template!r})")
        out += (template[pos:start], value)
        pos = end
    out.append(template[pos:])
    rendered = "".join(out)
    if len(rendered) > MAX_RENDERED_LENGTH:
        raise ActionFailed(f"{what}: the rendered value is {len(rendered)} characters long; the limit is {MAX_RENDERED_LENGTH}")
    return rendered
