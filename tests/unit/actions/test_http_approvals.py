"""HTTP approvals are closed unless a token is configured: the safe default."""

from __future__ import annotations

import asyncio

from agent.config import AgentConfig, KafkaConfig
from agent.rules import RuleSet
from agent.runtime.http import Request
from agent.runtime.remediation import Remediation
from agent.runtime.selfmetrics import SelfMetrics


def _remediation(token: str | None) -> Remediation:
    config = AgentConfig(kafka=KafkaConfig("127.0.0.1:9"), rules=("unused.yaml",), actions_approve_token=token)
    return Remediation(config, broker=None, metrics=SelfMetrics(), rules=lambda: RuleSet(()), stopping=asyncio.Event())


async def test_without_a_token_http_approvals_are_refused() -> None:
    answer = await _remediation(None)._answer(Request("POST", "/actions/0123456789ab/approve"))
    assert answer.status == 403
    assert "watchkeeper actions approve" in str(answer.body)


async def test_with_a_token_a_request_without_it_is_unauthorised() -> None:
    answer = await _remediation("s3cret")._answer(Request("POST", "/actions/0123456789ab/approve", headers={"authorization": "Bearer nope"}))
    assert answer.status == 401
