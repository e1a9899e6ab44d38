"""The notify kind: params, a target that never leaks the URL, and how answers are classified.

The HTTP side runs against httpx's own transport seam (``MockTransport``); the real post
to a webhook server is in tests/integration/test_remediation.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from actions.base import ActionContext, ActionFailed, TransientActionError
from actions.notify import Notify, NotifyParams
from agent.model import Alert, AlertState

SECRET_URL = "https://hooks.slack.example/services/T000/B000/secret-token"

ALERT = Alert(
    fingerprint="0123456789abcdef", rule_id="inference/HighErrors", state=AlertState.FIRING,
    labels={"alertname": "HighErrors", "service": "search", "severity": "page"},
    annotations={"summary": "search fails 21% of requests", "runbook_url": "https://runbooks/x"},
    active_at=1_764_064_800.0, value=0.21, fired_at=1_764_064_830.0,
)


def notify(handler: Callable[[httpx.Request], httpx.Response] | None = None, env: dict[str, str] | None = None, **params: object) -> Notify:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler)) if handler else None
    context = ActionContext(http=http, extra={"env": env if env is not None else {"HOOK": SECRET_URL}})
    return Notify(NotifyParams.model_validate({"type": "notify", **params}), context)


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({}, "exactly one of url_env"),
        ({"url_env": "A", "url": "http://x"}, "exactly one of url_env"),
        ({"url": "ftp://x"}, r"not an http\(s\) URL"),
        ({"url_env": "not a name"}, "url_env"),
        ({"url_env": "A", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_params(entry: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        NotifyParams.model_validate({"type": "notify", **entry})


async def test_plan_reads_nothing_and_names_no_secret() -> None:
    calls: list[httpx.Request] = []
    action = notify(lambda r: calls.append(r) or httpx.Response(200), url_env="HOOK")
    target = action.target(ALERT)
    assert target.key == "webhook/HOOK/0123456789abcdef"
    plan = await action.plan(ALERT, target)
    assert calls == [] and not plan.noop and plan.blocked is None
    assert "secret" not in json.dumps({**plan.after, "reason": plan.reason})
    literal = notify(url=SECRET_URL)
    assert "secret" not in literal.target(ALERT).key and "hooks.slack.example" in literal.target(ALERT).key


async def test_apply_posts_a_slack_compatible_message() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    action = notify(ok, url_env="HOOK", channel="#remediation", text="Roll back if it persists.")
    after = await action.apply(await action.plan(ALERT, action.target(ALERT)), ALERT)
    assert after == {"webhook": "HOOK", "status": 200}
    (request,) = seen
    assert str(request.url) == SECRET_URL
    body = json.loads(request.content)
    assert body["channel"] == "#remediation"
    assert body["text"].splitlines() == [
        "[FIRING] HighErrors {service=search, severity=page}",
        "search fails 21% of requests",
        "Roll back if it persists.",
    ]
    assert "fingerprint: 0123456789abcdef" in body["attachments"][0]["text"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [(500, TransientActionError), (503, TransientActionError), (429, TransientActionError), (404, ActionFailed), (403, ActionFailed)],
)
async def test_server_errors_are_transient_client_errors_final(answer: int, error: type[Exception]) -> None:
    action = notify(lambda r: httpx.Response(answer, text="no"), url_env="HOOK")
    with pytest.raises(error, match=str(answer)):
        await action.apply(await action.plan(ALERT, action.target(ALERT)), ALERT)


async def test_connection_errors_are_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    action = notify(refuse, url_env="HOOK")
    with pytest.raises(TransientActionError, match="ConnectError"):
        await action.apply(await action.plan(ALERT, action.target(ALERT)), ALERT)


async def test_an_unset_variable_is_reported_in_the_plan_and_fails_the_apply() -> None:
    action = notify(lambda r: httpx.Response(200), env={}, url_env="HOOK")
    plan = await action.plan(ALERT, action.target(ALERT))
    assert "not set" in plan.reason
    with pytest.raises(ActionFailed, match="HOOK"):
        await action.apply(plan, ALERT)


def test_message_of_an_alert_without_annotations() -> None:
    bare = Alert("f", "g/A", AlertState.FIRING, {"alertname": "A"}, {}, 0.0, math.nan)
    assert notify(url_env="HOOK").message(bare)["text"] == "[FIRING] A {}"
