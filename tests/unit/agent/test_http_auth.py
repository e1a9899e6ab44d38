"""The agent's HTTP API behind tokens: the real ``AgentApp`` server on a loopback port.

Every route but the probes needs a bearer token; the token is compared as bytes, so a
header in any encoding is a 401 and never a 500 (nor a traceback quoting the token).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, redirect_stderr
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from agent.config import AgentConfig, KafkaConfig
from agent.logs import configure_logging
from agent.rules import RuleSet
from agent.runtime.app import AgentApp
from agent.runtime.approvers import Approvers
from agent.runtime.http import HttpServer, Request, Response, Route
from agent.runtime.notifier import TerminalSink

TOKEN = "approve-0123456789abcdef"  # the single-approver shorthand (WATCHKEEPER_ACTIONS_APPROVE_TOKEN_FILE)
PROBES = ("/metrics", "/healthz", "/readyz")
PROTECTED = ("/actions", "/actions?pending=1", "/reports/any.html", "/reports/", "/actions/x/approve")


def agent_config(tmp_path: Path, **settings: Any) -> AgentConfig:
    return AgentConfig(
        kafka=KafkaConfig("127.0.0.1:9"),
        rules=("unused.yaml",),
        http_addr="127.0.0.1:0",
        report_dir=str(tmp_path / "reports"),
        checkpoints=False,
        **settings,
    )


@asynccontextmanager
async def serving(config: AgentConfig) -> AsyncIterator[httpx.AsyncClient]:
    """The agent's own HTTP server (nothing else of the agent runs)."""
    app = AgentApp(config, TerminalSink(), rules=RuleSet(()))
    assert app.http is not None
    await app.http.start()
    try:
        base = f"http://127.0.0.1:{app.http.port}"
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as client:
            yield client
    finally:
        await app.http.stop()
        await app.remediation.aclose()


async def test_every_route_but_the_probes_needs_a_token(tmp_path: Path) -> None:
    async with serving(agent_config(tmp_path, actions_approve_token=TOKEN)) as http:
        for path in PROBES:
            assert (await http.get(path)).status_code in (200, 503), path
        for path in PROTECTED:
            bare = await http.get(path)
            wrong = await http.get(path, headers={"authorization": f"Bearer {TOKEN}x"})
            assert (bare.status_code, wrong.status_code) == (401, 401), path
            assert bare.headers["www-authenticate"].startswith("Bearer")
            assert "pending" not in bare.text and "recent" not in bare.text
        post = await http.post("/actions/0123456789ab/approve", json={"by": "mallory"})
        assert post.status_code == 401
        listing = await http.get("/actions", headers={"authorization": f"Bearer {TOKEN}"})
        assert listing.status_code == 200 and listing.json()["pending"] == []
        assert listing.headers["x-content-type-options"] == "nosniff"  # labels in JSON never sniffed as HTML
        auth = {"authorization": f"Bearer {TOKEN}"}
        for body in (b"[" * 100_000, b'{"by": ' * 50_000, b"\xff\xfe", b"[1, 2]", b'"approve"'):
            answer = await http.post("/actions/0123456789ab/approve", content=body, headers=auth)
            assert answer.status_code == 400, body[:20]


async def test_without_any_token_configured_the_api_is_closed(tmp_path: Path) -> None:
    async with serving(agent_config(tmp_path)) as http:
        for path in PROTECTED:
            answer = await http.get(path, headers={"authorization": "Bearer anything-at-all-here"})
            assert answer.status_code == 403, path
        assert (await http.post("/actions/0123456789ab/approve")).status_code == 403
        assert (await http.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer \xff\xfe" + TOKEN.encode(),
        b"Bearer " + TOKEN.encode() + "é".encode(),
        b"Bearer " + "ünïcødé-tøkén-0123456789".encode(),
        b"Bearer " + TOKEN.encode("latin-1") + b"\x80",
        b"\xc3\xa9",
        b"Bearer",
        b"Basic " + TOKEN.encode(),
        TOKEN.encode(),
        b"Bearer " + TOKEN.encode() + b", Bearer " + TOKEN.encode(),
    ],
)
async def test_a_bad_authorization_header_is_401_never_500(tmp_path: Path, value: bytes) -> None:
    async with serving(agent_config(tmp_path, actions_approve_token=TOKEN)) as http:
        for method, path in (("GET", "/actions"), ("POST", "/actions/0123456789ab/approve"), ("GET", "/reports/a.html")):
            answer = await http.request(method, path, headers=[(b"authorization", value)])
            assert answer.status_code == 401, (method, path, answer.text)


@pytest.mark.parametrize("json_logs", [False, True], ids=["console", "json"])
async def test_a_non_ascii_token_leaves_no_traceback_and_no_token_in_the_log(tmp_path: Path, json_logs: bool) -> None:
    secret = TOKEN.encode() + "-ünïcødé".encode()
    err = io.StringIO()
    with redirect_stderr(err):
        configure_logging("debug", json=json_logs)
        try:
            async with serving(agent_config(tmp_path, actions_approve_token=TOKEN)) as http:
                answer = await http.get("/actions", headers=[(b"authorization", b"Bearer " + secret)])
                answer_post = await http.post("/actions/abc/approve", headers=[(b"authorization", b"Bearer " + secret)])
        finally:
            configure_logging("info", json=True)
    log = err.getvalue()
    assert (answer.status_code, answer_post.status_code) == (401, 401)
    assert "Traceback" not in log and "TypeError" not in log
    assert TOKEN not in log and "ünïcødé" not in log


async def test_a_read_token_lists_but_cannot_answer(tmp_path: Path) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text("grafana: {token: read-0123456789abcdef, role: read}\nalice: alice-0123456789abcdef\n")
    approvers.chmod(0o600)
    async with serving(agent_config(tmp_path, approvers_file=str(approvers))) as http:
        reader = {"authorization": "Bearer read-0123456789abcdef"}
        assert (await http.get("/actions", headers=reader)).status_code == 200
        assert (await http.get("/reports/missing.html", headers=reader)).status_code == 404
        refused = await http.post("/actions/0123456789ab/approve", headers=reader)
        assert refused.status_code == 403 and "grafana" in refused.text
        alice = {"authorization": "bearer alice-0123456789abcdef"}  # the scheme is case-insensitive
        assert (await http.post("/actions/0123456789ab/approve", headers=alice)).status_code == 404  # no such request


class Seen:
    """A handler that remembers the request it was given."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(200, "seen\n")


@pytest.fixture
async def server_with(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[HttpServer] = []

    async def start(routes: dict[str, Any], approvers: Approvers | None) -> httpx.AsyncClient:
        server = HttpServer("127.0.0.1:0", CollectorRegistry(), lambda: (True, ""), routes=routes, authenticator=approvers)
        await server.start()
        servers.append(server)
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False, timeout=5)

    yield start
    for server in servers:
        await server.stop()


async def test_a_route_added_later_is_protected_by_default(server_with: Callable[..., Any]) -> None:
    seen, public = Seen(), Seen()
    approvers = Approvers(shorthand=TOKEN)
    async with await server_with({"/new/": seen, "/open": Route(public, public=True)}, approvers) as http:
        assert (await http.get("/new/thing")).status_code == 401
        assert (await http.get("/open")).status_code == 200
        assert (await http.get("/new/thing", headers={"authorization": f"Bearer {TOKEN}"})).status_code == 200
    (request,) = seen.requests
    assert "authorization" not in request.headers  # handlers never see the token
    assert request.principal is not None and request.principal.name == "approve-token"


async def test_handler_errors_log_no_locals(server_with: Callable[..., Any]) -> None:
    async def broken(request: Request) -> Response:
        password = "hunter2-in-a-local"  # noqa: F841 - what a traceback with locals would print
        raise RuntimeError("handler bug")

    err = io.StringIO()
    with redirect_stderr(err):
        configure_logging("info", json=False)
        try:
            async with await server_with({"/broken": broken}, Approvers(shorthand=TOKEN)) as http:
                answer = await http.get("/broken", headers={"authorization": f"Bearer {TOKEN}"})
            await asyncio.sleep(0)
        finally:
            configure_logging("info", json=True)
    assert answer.status_code == 500
    assert "RuntimeError: handler bug" in err.getvalue() and "hunter2" not in err.getvalue()
    assert TOKEN not in err.getvalue()
