"""Small helpers to build rules and events inline in unit tests."""

from __future__ import annotations

from typing import Any

from agent.model import EVENT_ADAPTER
from agent.rules import RuleSet
from agent.rules.loader import load_rule_file


def rules_from(text: str, name: str = "inline.yaml") -> RuleSet:
    return RuleSet(rules=tuple(load_rule_file(name, text)), files=(name,))


def one_rule(detector: str, *, for_: str = "0s", keep: str = "0s", match: str = "{}", by: str = "[service]", source: str = "inference", extra: str = "") -> RuleSet:
    return rules_from(
        f"""
groups:
  - name: g
    rules:
      - alert: A
        source: {source}
        match: '{match}'
        by: {by}
        detector: {detector}
        for: {for_}
        keep_firing_for: {keep}
        labels: {{severity: page}}
        annotations: {{summary: "{{{{ $labels.service }}}} at {{{{ $value }}}}"}}
{extra}"""
    )


def inference(ts: float, latency_ms: float = 10.0, service: str = "svc", status: str = "ok", **more: Any) -> Any:
    payload = {
        "type": "inference",
        "ts": ts,
        "service": service,
        "model": more.pop("model", "m"),
        "model_version": "1",
        "latency_ms": latency_ms,
        "status": status,
        **more,
    }
    return EVENT_ADAPTER.validate_python(payload)
