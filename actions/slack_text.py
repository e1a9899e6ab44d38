"""Untrusted values made inert in Slack message text: no links, mentions, formatting or forged lines.

Label and annotation values come from event fields any producer chooses. Slack parses
control sequences in message text whatever else the message says: ``<!channel>`` pages
a whole channel, ``<https://evil.example|runbook>`` is a link that reads "runbook", and
``&lt;`` is an entity. Slack's documented escape is ``&`` -> ``&amp;``, ``<`` -> ``&lt;``,
``>`` -> ``&gt;`` (https://api.slack.com/reference/surfaces/formatting#escaping); with those
three, no value can open a control sequence.

The rest is belt and braces, for Slack-compatible webhooks that parse more:

* ``@channel``, ``@here``, ``@everyone`` (which Slack with ``link_names``, Mattermost and
  others turn into mass mentions) get a zero-width space after the ``@``;
* line breaks and other control characters become visible escapes (``\\n``), so a value
  cannot forge a line such as ``[RESOLVED] ...`` in the message;
* a value is cut at :data:`VALUE_MAX` characters.

``*``, ``_``, ``~`` and backticks have no escape in Slack's mrkdwn; the notify message
turns mrkdwn off for its text and attachment instead (``"mrkdwn": false``,
``"mrkdwn_in": []``), so they are shown as typed.
"""

from __future__ import annotations

import re

__all__ = ["VALUE_MAX", "escape_value"]

VALUE_MAX = 500
_MENTION = re.compile(r"@(?=(?:channel|here|everyone|all)\b)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _visible(match: re.Match[str]) -> str:
    char = match.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\u{ord(char):04x}")


def escape_value(value: object) -> str:
    """``value`` as text that Slack shows literally.

    >>> escape_value("<!channel> & <https://evil.example|runbook>")
    '&lt;!channel&gt; &amp; &lt;https://evil.example|runbook&gt;'
    >>> escape_value("@here\\n[RESOLVED] all good")
    '@\\u200bhere\\\\n[RESOLVED] all good'
    """
    text = str(value)
    if len(text) > VALUE_MAX:
        text = text[:VALUE_MAX] + "..."
    text = _CONTROL.sub(_visible, text).translate(_ENTITIES)
    return _MENTION.sub("@\u200b", text)
