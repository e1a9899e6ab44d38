"""The fault proxy in front of a real HTTP server: forwards while healthy, answers for it while failing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from agent.simulate.fault_proxy import FaultProxy


@pytest.fixture
def upstream() -> Iterator[str]:
    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(201)
            self.send_header("X-Path", self.path)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_forwards_then_fails_then_heals(upstream: str) -> None:
    proxy = await FaultProxy(upstream).start()
    try:
        async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
            ok = await client.post("/api/2.0/x?a=1", content=b"hello")
            assert (ok.status_code, ok.content, ok.headers["x-path"]) == (201, b"hello", "/api/2.0/x?a=1")
            proxy.fail(503)
            down = await client.post("/api/2.0/x", content=b"hello")
            assert down.status_code == 503 and b"injected" in down.content
            proxy.fail(409)
            assert (await client.post("/y")).status_code == 409
            proxy.heal()
            assert (await client.post("/z", content=b"back")).content == b"back"
    finally:
        await proxy.stop()
    assert (proxy.forwarded, proxy.refused) == (2, 2)


async def test_fails_only_the_named_methods_and_only_so_many_requests(upstream: str) -> None:
    proxy = await FaultProxy(upstream).start()
    try:
        async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
            proxy.fail(500, methods=["patch"], requests=2)
            assert (await client.post("/read")).status_code == 201  # not a PATCH: passes
            assert [(await client.patch("/w")).status_code for _ in range(2)] == [500, 500]
            assert (await client.patch("/w")).status_code != 500  # the budget is spent
    finally:
        await proxy.stop()
    assert proxy.refused == 2


async def test_a_list_of_statuses_is_answered_in_order_then_requests_pass(upstream: str) -> None:
    proxy = await FaultProxy(upstream).start()
    try:
        async with httpx.AsyncClient(base_url=proxy.url, trust_env=False) as client:
            proxy.fail([409, 500], methods=["POST"])
            codes = [(await client.post("/w", content=b"x")).status_code for _ in range(3)]
    finally:
        await proxy.stop()
    assert codes == [409, 500, 201]
