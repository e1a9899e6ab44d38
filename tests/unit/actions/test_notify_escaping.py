"""Hostile label and annotation values in a notify message: shown as typed, never parsed by Slack.

Slack parses ``<...>`` (links, ``<!channel>``, ``<@U123>``) and ``&`` entities in any
message text; a producer sets label values. The real post to a webhook server is in
tests/integration/test_remediation.py; here the body is checked directly.
"""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from actions.base import ActionContext
from actions.notify import Notify, NotifyParams
from agent.model import Alert, AlertState

_MENTION = re.compile(r"@(channel|here|everyone|all)\b", re.IGNORECASE)


def _message(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, object]:
    action = Notify(NotifyParams.model_validate({"type": "notify", "url_env": "HOOK"}), ActionContext(extra={"env": {}}))
    alert = Alert("0123456789abcdef", "g/Hot", AlertState.FIRING, {"alertname": "Hot", **labels}, annotations, 0.0, 1.0)
    return action.message(alert)


def _texts(body: dict[str, object]) -> list[str]:
    (attachment,) = body["attachments"]  # type: ignore[misc]
    return [str(body["text"]), str(attachment["title"]), str(attachment["text"])]


def test_slack_control_sequences_from_labels_are_escaped() -> None:
    body = _message(
        {"service": "<!channel>", "model": "<https://evil.example|runbook>", "team": "a & b", "x": "*bold* _it_ `code`"},
        {"summary": "<@U123> look", "description": "@here please\n[RESOLVED] fine"},
    )
    text, _, details = _texts(body)
    assert "<" not in text + details and ">" not in text + details
    assert "service=&lt;!channel&gt;" in text and "model=&lt;https://evil.example|runbook&gt;" in text
    assert "team=a &amp; b" in text and "&lt;@U123&gt; look" in text
    assert "@\u200bhere please\\n[RESOLVED] fine" in details  # one line: no forged "[RESOLVED]" line
    assert not _MENTION.search(text + details)
    assert body["mrkdwn"] is False and body["attachments"][0]["mrkdwn_in"] == []  # type: ignore[index]


def test_honest_values_read_as_before() -> None:
    text, _, _ = _texts(_message({"service": "search", "severity": "page"}, {"summary": "search fails 21% of requests"}))
    assert text.splitlines() == ["[FIRING] Hot {service=search, severity=page}", "search fails 21% of requests"]


_values = st.text(st.characters(codec="utf-8"), max_size=60) | st.sampled_from(
    ["<!channel>", "<!here|here>", "<https://evil|click>", "&lt;", "@channel", "@HERE", "a\nb", "\u202eevil", ">"]
)


@settings(max_examples=300, deadline=None)
@given(labels=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _values, max_size=5),
       annotations=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _values, max_size=3))
def test_no_value_opens_a_control_sequence_mentions_or_adds_a_line(labels: dict[str, str], annotations: dict[str, str]) -> None:
    labels.pop("alertname", None)
    body = _message(labels, annotations)
    json.dumps(body)  # still a valid JSON body
    for text in _texts(body):
        assert "<" not in text and ">" not in text
        assert re.fullmatch(r"([^&]|&(amp|lt|gt);)*", text, re.S), text  # every & starts one of the 3 entities
        assert not _MENTION.search(text)
    text = str(body["text"])
    assert len(text.splitlines()) == 1 + bool(annotations.get("summary"))  # values never add lines
