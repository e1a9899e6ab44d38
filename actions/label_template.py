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
from collections.abc import Mapping

from actions.base import ActionFailed

__all__ = ["MAX_RENDERED_LENGTH", "check_label_template", "render_label_template"]

MAX_RENDERED_LENGTH = 4096
"""The longest parameter a template may render to, in characters (as alert label values)."""

_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)
_LABEL = re.compile(r"^\$labels\.([A-Za-z_][A-Za-z0-9_]*)$")


def check_label_template(template: str) -> str:
    """Validate at rule load: only ``{{ $labels.NAME }}`` actions are allowed.

    >>> check_label_template("{{ $labels.service }}-canary")
    '{{ $labels.service }}-canary'
    >>> check_label_template("{{ $value }}")
    Traceback (most recent call last):
    ...
    ValueError: only {{ $labels.NAME }} may be used here, not {{ $value }}
    """
    for match in _ACTION.finditer(template):
        if not _LABEL.match(match.group(1)):
            raise ValueError(f"only {{{{ $labels.NAME }}}} may be used here, not {{{{ {match.group(1)} }}}}")
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

    def one(match: re.Match[str]) -> str:
        found = _LABEL.match(match.group(1))
        name = found.group(1) if found else match.group(1)
        value = labels.get(name, "")
        if not value:
            raise ActionFailed(f"{what}: the alert has no label {name!r} (template {template!r})")
        return value

    rendered = _ACTION.sub(one, template).strip()
    if len(rendered) > MAX_RENDERED_LENGTH:
        raise ActionFailed(f"{what}: the rendered value is {len(rendered)} characters long; the limit is {MAX_RENDERED_LENGTH}")
    return rendered
