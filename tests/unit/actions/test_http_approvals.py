"""HTTP approvals are closed unless a token is configured: the safe default.

The requests go through ``HttpApp`` (which authenticates before any handler runs),
not straight to the handler; test_http_auth.py covers the same over a real socket.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from agent.config import AgentConfig, KafkaConfig
from agent.rules import RuleSet
from agent.runtime.approvers import Approvers
from agent.runtime.http import HttpApp, Request, Response
from agent.runtime.remediation import Remediation
from agent.runtime.selfmetrics import SelfMetrics


def _remediation(token: str | None) -> Remediation:
    config = AgentConfig(kafka=KafkaConfig("127.0.0.1:9"), rules=("unused.yaml",), actions_approve_token=token)
    return Remediation(config, broker=None, metrics=SelfMetrics(), rules=lambda: RuleSet(()), stopping=asyncio.Event())


async def _answer(token: str | None, request: Request) -> Response:
    app = HttpApp(CollectorRegistry(), lambda: (True, ""), _remediation(token).routes(), Approvers(shorthand=token))
    return await app._answer(request)


async def test_without_a_token_http_approvals_are_refused() -> None:
    answer = await _answer(None, Request("POST", "/actions/0123456789ab/approve"))
    assert answer.status == 403
    assert "watchkeeper actions approve" in str(answer.body)


async def test_the_handler_alone_refuses_an_unauthenticated_request() -> None:
    answer = await _remediation(None)._answer(Request("POST", "/actions/0123456789ab/approve"))
    assert answer.status == 403
    assert "watchkeeper actions approve" in str(answer.body)


async def test_with_a_token_a_request_without_it_is_unauthorised() -> None:
    answer = await _answer("s3cret-0123456789ab", Request("POST", "/actions/0123456789ab/approve", headers={"authorization": "Bearer nope"}))
    assert answer.status == 401
