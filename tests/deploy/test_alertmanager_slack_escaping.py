"""The shipped Alertmanager config escapes producer-controlled text before Slack sees it.

Alert annotations are rendered from labels, and labels come from event fields any
producer chooses. Slack reads ``<!channel>``, ``<@U123>`` and ``<https://x|text>`` in a
message as a mass mention, a user mention and a disguised link, and ``&`` starts an
entity; its documentation asks senders to escape ``&``, ``<`` and ``>``. The notify action
does so in Python (actions/slack_text.py); pages go through Alertmanager's own Slack
receiver, so its templates must do the same. Checked end to end: the shipped config,
a real Alertmanager, a recorded Slack webhook.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml

from tests.testbed import ALERTMANAGER, Alertmanager, SlackRecorder

from .manifests import ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ALERTMANAGER.exists(), reason="prometheus-alertmanager not installed (run .ci/setup)"),
]

HOSTILE = {
    "service": "<!channel>",
    "model": "<https://evil.example/login|Open the runbook>",
}
SUMMARY = "p99 of {service}/{model} is high & rising <!here> <@U0123ABC>"


def _shipped_config_to(slack_url: str, path: str) -> str:
    """The shipped config, sending to the recorder at once (only the timing and URL change)."""
    config = yaml.safe_load((ROOT / path).read_text())
    config["global"].pop("slack_api_url_file")
    config["global"]["slack_api_url"] = slack_url
    config["route"].update(group_wait="1s", group_interval="1s")
    return yaml.safe_dump(config, sort_keys=False, width=1000)


@pytest.mark.parametrize("path", ["deploy/alertmanager/alertmanager.yml", "deploy/kubernetes/alertmanager/alertmanager.yaml"])
@pytest.mark.parametrize("severity", ["page", "ticket"])
def test_label_values_cannot_mention_or_link_in_slack(tmp_path, path, severity):
    with SlackRecorder() as slack, Alertmanager(slack.url, workdir=tmp_path, config=_shipped_config_to(slack.url, path)) as am:
        alert = {
            "labels": {"alertname": "InferenceHighP99Latency", "severity": severity, **HOSTILE},
            "annotations": {
                "summary": SUMMARY.format(**HOSTILE),
                "description": f"service {HOSTILE['service']} <b>bold</b>",
                "runbook_url": "<!everyone>",
            },
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        httpx.post(f"{am.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
        message = slack.wait_for(lambda m: "attachments" in m, timeout_s=15)

    shown = json.dumps([{k: a.get(k) for k in ("title", "text", "fallback", "pretext")} for a in message["attachments"]])
    shown_text = json.loads(shown)
    everything = " ".join(str(v) for item in shown_text for v in item.values() if v)
    for control in ("<!channel>", "<!here>", "<!everyone>", "<@U0123ABC>", "<https://evil.example", "<b>"):
        assert control not in everything, f"{control!r} reached Slack unescaped: {everything}"
    assert "&lt;!channel&gt;" in everything  # shown to people as text, not dropped
    assert "&amp;" in everything and " & " not in everything
